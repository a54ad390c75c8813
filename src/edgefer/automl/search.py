"""Hardware-aware architecture search: one Optuna study per (dataset, target, objective).

A trial samples an ArchSpec and its training budget from the target's space (``space.suggest``),
is pruned at once when the target cannot run the spec, trains on the dataset's training split with
the shared trainer (pruned early on validation accuracy), and is priced by the target's cost model.

Objectives:

* ``hierarchical`` (the study's cost, arXiv 2305.15422: accuracy first, then power-delay product):
  one scalar to minimise, ``floor((1 - val_accuracy) / tolerance) + pdp / (pdp + pdp_reference)``.
  The first term counts whole tolerance steps of validation error (default 1 point), the second is
  in [0, 1), so any gain of one accuracy step beats every PDP saving, and among trials in the same
  step the lower PDP wins. ``pdp_reference`` is the shipped reference model's PDP on the same
  target, which keeps the second term well scaled on every device.
* ``pareto``: multi-objective TPE over (validation accuracy up, latency down, energy down).

Pruning: ``hierarchical`` reports the validation error after every epoch to Optuna's median pruner.
Optuna refuses ``Trial.report`` in multi-objective studies, so ``pareto`` applies the same median
rule itself to the per-epoch accuracy curves that completed trials store.

Storage is any Optuna RDB URL, by default a SQLite file in the study's output folder. Workers on
other machines join a study by pointing at the same URL (PostgreSQL). A heartbeat marks trials of a
killed worker FAIL once it is stale, and ``--trials N`` counts finished trials of the whole study,
so running the same command again resumes it.
"""

from __future__ import annotations

import math
import os
import socket
import time

import numpy as np

from edgefer.automl.report import best_text, write_outputs
from edgefer.automl.space import suggest
from edgefer.automl.study import (MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS, SearchData, SearchSettings,
                                  base_train_config, fail_stale_trials, finished_count, load_search_data,
                                  model_card_base, open_study, rejecting_violations, search_target, trial_counts)
from edgefer.data.datasets import get_dataset
from edgefer.errors import EdgeferError, output_folder

def reference_row(settings: SearchSettings, target, data: SearchData) -> dict:
    """The shipped reference model on the search's validation split and on the target's cost model."""
    from edgefer.nn.evaluate import evaluate
    from edgefer.nn.zoo import load_model, shipped_models

    name = get_dataset(settings.dataset).shipped_model(target.compare_roles[0])  # the CNN, or a chip's spiking net
    if name not in shipped_models():
        raise EdgeferError(f"the reference model {name!r} for {settings.target} on {settings.dataset} is not shipped")
    model = load_model(name)
    return {"model": name, "val_accuracy": evaluate(model, data.validation)["accuracy"],
            **cost_row(*target.search_cost(model, data.validation))}


def cost_row(cost, extra: dict) -> dict:
    return {"latency_s": cost.latency_s, "power_w": cost.power_w, "energy_j": cost.energy_j, "pdp_j": cost.pdp_j,
            "cost_source": cost.source, **extra}


def hierarchical_cost(val_accuracy: float, pdp_j: float, reference_pdp_j: float, tolerance: float) -> float:
    """Whole tolerance steps of validation error, plus the PDP squashed into [0, 1)."""
    steps = math.floor((1.0 - val_accuracy) / tolerance + 1e-9)
    return steps + pdp_j / (pdp_j + reference_pdp_j)


class Objective:
    """One trial: sample, reject infeasible specs, train with pruning, price, save the weights."""

    def __init__(self, settings: SearchSettings, target, data: SearchData, reference: dict):
        self.settings = settings
        self.target = target
        self.data = data
        self.reference = reference
        self.base_config = base_train_config(settings.dataset)
        self.trials_dir = settings.out / "trials"

    def __call__(self, trial):
        import optuna

        from edgefer.nn.train import train

        settings = self.settings
        spec, config = suggest(trial, self.target.search, settings.budget, len(self.data.train.classes), self.base_config)
        trial.set_user_attr("arch", spec.to_dict())
        problems = rejecting_violations(self.target, spec, settings.allowed_warnings)
        if problems:
            trial.set_user_attr("infeasible", [str(v) for v in problems])
            raise optuna.TrialPruned("infeasible: " + "; ".join(str(v) for v in problems))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("out", str(settings.out.resolve()))  # whose audit log lists it (report.write_trial_log)
        trial.set_user_attr("train_config", config.to_dict())
        started = time.time()
        result = train(spec, self.data.train, self.data.validation, config, progress=False,
                       on_epoch=self._pruning_hook(trial))
        model = result.model
        model.info = model_card_base(settings, self.data)
        cost, extra = self.target.search_cost(model, self.data.validation)
        path = model.save(self.trials_dir / f"trial-{trial.number:04d}.safetensors")
        row = {"val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch, **cost_row(cost, extra),
               **model.summary(), "checkpoint": str(path.resolve()), "train_seconds": round(time.time() - started, 1)}
        for key, value in row.items():
            trial.set_user_attr(key, value)
        if settings.objective == "hierarchical":
            return hierarchical_cost(row["val_accuracy"], row["pdp_j"], self.reference["pdp_j"], settings.tolerance)
        return row["val_accuracy"], row["latency_s"], row["energy_j"]

    def _pruning_hook(self, trial):
        import optuna

        curve: list[float] = []
        if self.settings.objective == "pareto":
            medians = epoch_medians(trial.study)

        def on_epoch(row: dict) -> None:
            epoch, accuracy = row["epoch"], row["val_accuracy"]
            curve.append(accuracy)
            trial.set_user_attr("val_curve", curve)
            if self.settings.objective == "hierarchical":
                trial.report(1.0 - accuracy, epoch)
                prune = trial.should_prune()
            else:
                prune = epoch > MEDIAN_WARMUP_EPOCHS and epoch in medians and accuracy < medians[epoch]
            if prune:
                raise optuna.TrialPruned(f"validation accuracy {accuracy:.3f} below the median at epoch {epoch}")

        return on_epoch


def epoch_medians(study) -> dict[int, float]:
    """Median validation accuracy per epoch over completed trials (once there are enough of them)."""
    from optuna.trial import TrialState

    curves = [t.user_attrs.get("val_curve", []) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(curves) < MEDIAN_STARTUP_TRIALS:
        return {}
    longest = max(len(c) for c in curves)
    return {epoch: float(np.median([c[epoch - 1] for c in curves if len(c) >= epoch])) for epoch in range(1, longest + 1)}


def run_search(settings: SearchSettings) -> dict:
    """Run (or resume) a study until it has ``settings.trials`` finished trials or the timeout
    passes, then write the trial table, the Pareto plot and the best checkpoint. Returns the summary."""
    from edgefer.targets.costmodel import user_constants

    with user_constants(settings.constants):
        return _search(settings)


def _search(settings: SearchSettings) -> dict:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    torch.set_num_threads(settings.threads)
    target = search_target(settings.target)
    output_folder(settings.out)
    study = open_study(settings)
    data = load_search_data(settings)
    reference = study.user_attrs.get("reference")
    if reference is None:
        reference = reference_row(settings, target, data)
        study.set_user_attr("reference", reference)
    objective = Objective(settings, target, data, reference)
    started = time.time()
    rejected, failed = 0, 0
    # A target that rejects (nearly) every spec of its space would loop for ever.
    max_rejected = 50 * settings.trials
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
               TimeElapsedColumn()]
    with Progress(*columns, disable=not settings.progress) as bar:
        task = bar.add_task(f"search {settings.study_name}", total=settings.trials, completed=finished_count(study),
                            best=best_text(study))
        while True:
            fail_stale_trials(study)
            done, running = trial_counts(study)
            bar.update(task, completed=done, best=best_text(study))
            if done >= settings.trials:
                break
            if settings.timeout_s is not None and time.time() - started >= settings.timeout_s:
                break
            if done + running >= settings.trials:
                # Other workers' trials would complete the study, but one may yet fail or be infeasible.
                time.sleep(settings.heartbeat_s)
                continue
            ran = []
            study.optimize(objective, n_trials=1, catch=(EdgeferError,), gc_after_trial=False,
                           callbacks=[lambda _, trial: ran.append(trial)])
            if "infeasible" in ran[-1].user_attrs:
                rejected += 1
            elif ran[-1].state.name == "FAIL":
                failed += 1
            if rejected > max_rejected:
                raise EdgeferError(f"{settings.target} rejected {rejected} specs: its search space is almost all infeasible")
            if failed > settings.trials:
                raise EdgeferError(f"{failed} trials failed; see the trial table in {settings.out}")
    return write_outputs(settings, study, data, target)
