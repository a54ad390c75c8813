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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefer.automl.space import Budget, suggest
from edgefer.automl.targets import search_target
from edgefer.errors import EdgeferError
from edgefer.nn.recipes import RECIPES, load_recipe_data
from edgefer.nn.train import TrainConfig

OBJECTIVES = ("hierarchical", "pareto")
# Per dataset: the shipped recipe whose split the search uses (so its model is the fair reference)
# and the shipped models a searched net is compared with (the spiking net for Loihi).
DATASETS = {
    "ckplus": {"recipe": "ckplus-cnn", "reference": "ckplus-cnn", "loihi_reference": "ckplus-loihi"},
    "fer2013": {"recipe": "fer2013-cnn-base", "reference": "fer2013-cnn", "loihi_reference": "fer2013-loihi"},
}
MEDIAN_STARTUP_TRIALS = 5  # completed trials before the median rule prunes anything
MEDIAN_WARMUP_EPOCHS = 3  # epochs a trial always gets before it can be pruned
TPE_STARTUP_TRIALS = 8  # random trials before TPE models the space
DEFAULT_HEARTBEAT_S = 10


@dataclass
class SearchSettings:
    dataset: str
    target: str
    trials: int = 1  # finished trials the study should have
    objective: str = "hierarchical"
    storage: str | None = None  # Optuna RDB URL; default: SQLite in ``out``
    out: Path | None = None  # default runs/search/<dataset>-<target>-<objective>
    timeout_s: float | None = None  # no new trial starts after this many seconds
    threads: int = 1
    budget: Budget = field(default_factory=Budget)
    tolerance: float = 0.01
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    subset: int | None = None  # train on the first N training images only (smoke tests)
    data_root: Path | None = None
    progress: bool = True

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise EdgeferError(f"unknown dataset {self.dataset!r} for search; choose one of {', '.join(DATASETS)}")
        if self.objective not in OBJECTIVES:
            raise EdgeferError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.trials < 1:
            raise EdgeferError(f"--trials must be at least 1, got {self.trials}")
        if not 1 <= self.budget.min_epochs <= self.budget.max_epochs:
            raise EdgeferError(f"epochs budget must satisfy 1 <= min <= max, got {self.budget.min_epochs}..{self.budget.max_epochs}")
        if not 0 < self.tolerance < 1:
            raise EdgeferError(f"--tolerance must be in (0, 1), got {self.tolerance}")
        if self.threads < 1 or self.heartbeat_s < 1:
            raise EdgeferError("--threads and --heartbeat must be at least 1")
        if self.subset is not None and self.subset < 8:
            raise EdgeferError(f"--subset must keep at least 8 training images, got {self.subset}")
        self.out = Path(self.out) if self.out else Path("runs/search") / self.study_name

    @property
    def study_name(self) -> str:
        return f"{self.dataset}-{self.target}-{self.objective}"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"

    def fingerprint(self) -> dict:
        """What must not change between the workers and reruns of one study."""
        return {"dataset": self.dataset, "target": self.target, "objective": self.objective,
                "min_epochs": self.budget.min_epochs, "max_epochs": self.budget.max_epochs,
                "tolerance": self.tolerance, "subset": self.subset,
                "split": RECIPES[DATASETS[self.dataset]["recipe"]].split.to_dict(),
                "base_train_config": base_train_config(self.dataset).to_dict()}


def base_train_config(dataset: str) -> TrainConfig:
    """What a trial does not search (augmentation, weight decay, label smoothing, schedule, seed):
    the reference recipe's settings, e.g. CK+48's mild jitter (see ``RECIPES["ckplus-cnn"]``)."""
    return RECIPES[DATASETS[dataset]["recipe"]].config


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str, heartbeat_s: int = DEFAULT_HEARTBEAT_S):
    optuna = _optuna()
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the pinned driver is psycopg2.
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # The heartbeat is what fails a killed worker's trial; Optuna still labels it experimental.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                                              engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL or server
        raise EdgeferError(f"cannot open study storage {url!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def open_study(settings: SearchSettings, create: bool = True):
    """The study of these settings; ``create`` makes it when missing, else a missing one is an error."""
    optuna = _optuna()
    storage = open_storage(settings.storage_url, settings.heartbeat_s)
    if settings.objective == "hierarchical":
        directions = ["minimize"]
        pruner = optuna.pruners.MedianPruner(MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS)
    else:
        directions = ["maximize", "minimize", "minimize"]
        pruner = optuna.pruners.NopPruner()
    # constant_liar: concurrent workers see each other's running trials and spread out.
    sampler = optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True, constant_liar=True)
    if not create:
        try:
            return optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise EdgeferError(f"no study {settings.study_name!r} in {settings.storage_url}") from None
    study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                directions=directions, load_if_exists=True)
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings.fingerprint())
    elif recorded != settings.fingerprint():
        changed = sorted(k for k in recorded if recorded[k] != settings.fingerprint().get(k))
        raise EdgeferError(f"study {settings.study_name!r} was started with other settings ({', '.join(changed)}): "
                           "rerun with the same options or use another --out / --storage")
    return study


@dataclass
class SearchData:
    train: object
    validation: object
    test: object
    recipe: str


def load_search_data(settings: SearchSettings) -> SearchData:
    """The reference recipe's split (CK+48: the study's 75/10/15, seed 123): search on its
    validation part, report the best on its test part."""
    name = DATASETS[settings.dataset]["recipe"]
    train, validation, test = load_recipe_data(RECIPES[name], settings.data_root)
    if settings.subset is not None:
        train = train.subset(np.arange(min(settings.subset, len(train))))
    return SearchData(train, validation, test, name)


def model_card_base(settings: SearchSettings, data: SearchData) -> dict:
    """The part of a searched model's card that says what data it saw (the SNN path rebuilds its
    calibration images from it)."""
    return {"data": {"dataset": settings.dataset, "train": len(data.train), "validation": len(data.validation),
                     "test": len(data.test), "classes": list(data.train.classes)},
            "split": RECIPES[data.recipe].split.to_dict(), "input": "gray"}


def reference_row(settings: SearchSettings, target, data: SearchData) -> dict:
    """The shipped reference model on the search's validation split and on the target's cost model."""
    from edgefer.nn.evaluate import evaluate
    from edgefer.nn.zoo import load_model, shipped_models

    key = "loihi_reference" if settings.target == "loihi" else "reference"
    name = DATASETS[settings.dataset][key]
    if name not in shipped_models():
        raise EdgeferError(f"the reference model {name!r} for {settings.target} on {settings.dataset} is not shipped")
    model = load_model(name)
    measured = target.cost(model, data.validation)
    return {"model": name, "val_accuracy": evaluate(model, data.validation)["accuracy"], **cost_row(measured)}


def cost_row(measured) -> dict:
    cost = measured.cost
    return {"latency_s": cost.latency_s, "power_w": cost.power_w, "energy_j": cost.energy_j, "pdp_j": cost.pdp_j,
            "cost_source": cost.source, **measured.extra}


def hierarchical_cost(val_accuracy: float, pdp_j: float, reference_pdp_j: float, tolerance: float) -> float:
    """Whole tolerance steps of validation error, plus the PDP squashed into [0, 1)."""
    steps = math.floor((1.0 - val_accuracy) / tolerance + 1e-9)
    return steps + pdp_j / (pdp_j + reference_pdp_j)


def trial_counts(study) -> tuple[int, int]:
    """(finished, running): finished trials trained to an end (complete or pruned by the pruner);
    infeasible specs and failed (killed) trials do not count towards ``--trials``."""
    from optuna.trial import TrialState

    finished = running = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        if t.state == TrialState.RUNNING:
            running += 1
        elif "infeasible" not in t.user_attrs:
            finished += 1
    return finished, running


def finished_count(study) -> int:
    return trial_counts(study)[0]


def fail_stale_trials(study) -> None:
    """Mark trials of killed workers (no heartbeat for the grace period) FAIL."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Objective:
    """One trial: sample, reject infeasible specs, train with pruning, price, save the weights."""

    def __init__(self, settings: SearchSettings, target, data: SearchData, reference: dict):
        self.settings = settings
        self.target = target
        self.data = data
        self.reference = reference
        self.base_config = base_train_config(settings.dataset)
        self.trials_dir = settings.out / "trials"
        self.log = settings.out / "trial_runs.log"

    def __call__(self, trial):
        import optuna

        from edgefer.nn.train import train

        settings = self.settings
        spec, config = suggest(trial, self.target, settings.budget, len(self.data.train.classes), self.base_config)
        trial.set_user_attr("arch", spec.to_dict())
        problems = self.target.violations(spec)
        if problems:
            trial.set_user_attr("infeasible", [str(v) for v in problems])
            raise optuna.TrialPruned("infeasible: " + "; ".join(str(v) for v in problems))
        worker = f"{socket.gethostname()}:{os.getpid()}"
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("train_config", config.to_dict())
        started = time.time()
        try:
            result = train(spec, self.data.train, self.data.validation, config, progress=False,
                           on_epoch=self._pruning_hook(trial))
        except optuna.TrialPruned:
            self._log(trial.number, "pruned", worker, time.time() - started)
            raise
        model = result.model
        model.info = model_card_base(settings, self.data)
        measured = self.target.cost(model, self.data.validation)
        path = model.save(self.trials_dir / f"trial-{trial.number:04d}.safetensors")
        row = {"val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch, **cost_row(measured),
               **model.summary(), "checkpoint": str(path.resolve()), "train_seconds": round(time.time() - started, 1)}
        for key, value in row.items():
            trial.set_user_attr(key, value)
        self._log(trial.number, "complete", worker, time.time() - started)
        if settings.objective == "hierarchical":
            return hierarchical_cost(row["val_accuracy"], row["pdp_j"], self.reference["pdp_j"], settings.tolerance)
        return row["val_accuracy"], row["latency_s"], row["energy_j"]

    def _log(self, number: int, state: str, worker: str, seconds: float) -> None:
        """One line per trial that trained: which worker ran it (the audit of "each trial once")."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as handle:
            handle.write(f"{number}\t{state}\t{worker}\t{seconds:.1f}\n")

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
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgefer.automl.report import best_text, write_outputs

    torch.set_num_threads(settings.threads)
    target = search_target(settings.target)
    settings.out.mkdir(parents=True, exist_ok=True)
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
