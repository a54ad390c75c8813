"""What a study leaves behind: the trial table (CSV), the Pareto set, the best checkpoint with its
model card, a Pareto plot, and summary.json."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from edgefer import pareto
from edgefer.errors import EdgeferError

COST_COLUMNS = ("val_accuracy", "latency_s", "power_w", "energy_j", "pdp_j", "cost_source", "params", "macs",
                "best_epoch", "train_seconds")


def trial_rows(study) -> list[dict]:
    """One flat row per trial: state, objective value(s), searched choices (``space.*``), cost."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row = {"trial": t.number, "state": t.state.name.lower(), "worker": attrs.get("worker"),
               "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
               "value": None if t.values is None else (t.values[0] if len(t.values) == 1 else list(t.values))}
        row.update({f"space.{k}": v for k, v in t.params.items()})
        row.update({k: attrs.get(k) for k in COST_COLUMNS})
        for key in ("snn_accuracy", "cores"):
            if key in attrs:
                row[key] = attrs[key]
        row["infeasible"] = "; ".join(attrs.get("infeasible", []))
        row["arch"] = attrs.get("arch")
        row["train_config"] = attrs.get("train_config")
        row["checkpoint"] = attrs.get("checkpoint")
        rows.append(row)
    return rows


def completed(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] == "complete" and r["val_accuracy"] is not None]


def pareto_front(rows: list[dict]) -> list[dict]:
    """Completed trials that no other trial beats on validation accuracy, latency and energy at once."""
    done = completed(rows)
    points = [(r["val_accuracy"], r["latency_s"], r["energy_j"]) for r in done]
    front = [done[i] for i in pareto.pareto_front(points, maximise=(True, False, False))]
    return sorted(front, key=lambda r: (-r["val_accuracy"], r["energy_j"]))


def best_row(rows: list[dict], objective: str) -> dict | None:
    """hierarchical: the lowest cost; pareto: the most accurate trial of the front, then the least energy."""
    done = completed(rows)
    if not done:
        return None
    if objective == "hierarchical":
        return min(done, key=lambda r: (r["value"], r["trial"]))
    return min(done, key=lambda r: (-r["val_accuracy"], r["energy_j"], r["trial"]))


def best_text(study) -> str:
    """Best-so-far for the progress bar."""
    objective = "hierarchical" if len(study.directions) == 1 else "pareto"
    rows = trial_rows(study)
    best = best_row(rows, objective)
    if best is None:
        return "no completed trial yet"
    text = f"best #{best['trial']}: val {100 * best['val_accuracy']:.2f} %, {1e3 * best['latency_s']:.3g} ms, {1e3 * best['energy_j']:.3g} mJ"
    return text + (f", front {len(pareto_front(rows))}" if objective == "pareto" else "")


def _write_atomic(path: Path, text: str) -> None:
    """Several workers may finish at once on one machine: write aside, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_csv(rows: list[dict], path: Path) -> None:
    import io

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    _write_atomic(path, buffer.getvalue())


def plot_pareto(rows: list[dict], front: list[dict], best: dict | None, reference: dict, title: str, path: Path) -> None:
    """Validation accuracy against latency and against energy: all completed trials, the front, the
    best and the shipped reference model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    done = completed(rows)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for axis, key, label in ((axes[0], "latency_s", "latency per image (ms, modeled)"),
                             (axes[1], "energy_j", "energy per image (mJ, modeled)")):
        axis.scatter([1e3 * r[key] for r in done], [100 * r["val_accuracy"] for r in done], s=18, c="0.65", label="trials")
        axis.scatter([1e3 * r[key] for r in front], [100 * r["val_accuracy"] for r in front], s=30, c="tab:red", label="Pareto front")
        if best is not None:
            axis.scatter([1e3 * best[key]], [100 * best["val_accuracy"]], s=140, marker="*", c="tab:blue", label=f"best (trial {best['trial']})")
        if reference.get(key):
            axis.scatter([1e3 * reference[key]], [100 * reference["val_accuracy"]], s=70, marker="x", c="k", label=reference["model"])
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(plain)  # 0.3, not 3x10^-1
        axis.xaxis.set_minor_formatter(plain)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (%)")
    axes[1].legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)


def best_model(row: dict, data):
    """The best trial's trained network: its saved weights, or (when another machine ran it) the
    same seeded training again."""
    from edgefer.nn.model import FerModel
    from edgefer.nn.spec import ArchSpec
    from edgefer.nn.train import TrainConfig, train

    if row["checkpoint"] and Path(row["checkpoint"]).is_file():
        return FerModel.load(row["checkpoint"])
    result = train(ArchSpec.from_dict(row["arch"]), data.train, data.validation, TrainConfig(**row["train_config"]),
                   progress=False, description=f"retrain trial {row['trial']}")
    return result.model


def write_trial_log(settings, study) -> Path:
    """``trial_runs.log``: one line per trial this folder's workers trained to an end (number, state,
    worker, seconds), the audit of "each trial once". It is written from the study itself, so it never
    lists a trial the study does not hold as finished (a worker killed after training but before the
    study stored the result leaves that trial FAIL, and out of the log)."""
    out = str(settings.out.resolve())
    lines = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state.name in ("COMPLETE", "PRUNED") and "infeasible" not in attrs and attrs.get("out") == out:
            seconds = t.duration.total_seconds() if t.duration is not None else float("nan")
            lines.append(f"{t.number}\t{t.state.name.lower()}\t{attrs.get('worker')}\t{seconds:.1f}\n")
    path = settings.out / "trial_runs.log"
    _write_atomic(path, "".join(lines))
    return path


def write_outputs(settings, study, data, target) -> dict:
    """trials.csv, pareto.png, best.safetensors + best.json (model card), summary.json."""
    from edgefer.automl.study import finished_count, model_card_base, safe_url
    from edgefer.nn.evaluate import evaluate

    out = settings.out
    rows = trial_rows(study)
    write_csv(rows, out / "trials.csv")
    write_trial_log(settings, study)
    front = pareto_front(rows)
    best = best_row(rows, settings.objective)
    reference = study.user_attrs["reference"]
    plot_pareto(rows, front, best, reference, f"{settings.study_name}: {len(completed(rows))} completed trials "
                f"({finished_count(study)} finished, pruned included)", out / "pareto.png")
    states = {}
    for r in rows:
        key = "infeasible" if r["infeasible"] else r["state"]
        states[key] = states.get(key, 0) + 1
    trials = study.get_trials(deepcopy=False)
    ended = [t.datetime_complete for t in trials if t.datetime_complete]
    timing = {"trial_seconds_total": round(sum(t.duration.total_seconds() for t in trials if t.duration), 1),
              # first trial start to last trial end: the search's wall time when one worker ran it in one go
              "span_seconds": round((max(ended) - min(t.datetime_start for t in trials if t.datetime_start)).total_seconds(), 1)
              if ended else 0.0}
    summary = {"study": settings.study_name, "storage": safe_url(settings.storage_url), "dataset": settings.dataset,
               "target": settings.target, "objective": settings.objective, "command": settings.command(),
               "settings": settings.fingerprint(), "finished_trials": finished_count(study),
               "trial_states": states, **timing, "tolerance": settings.tolerance, "reference": reference,
               "pareto": [_brief(r) for r in front], "best": None}
    if best is not None:
        model = best_model(best, data)
        scores = evaluate(model, data.test)
        card = {"name": f"search-{settings.study_name}",
                "description": f"best trial ({best['trial']}) of the {settings.objective} search for {settings.target} on {settings.dataset}",
                **model_card_base(settings, data), "arch": best["arch"], "params": best["params"], "macs": best["macs"],
                "train_config": best["train_config"], "best_epoch": best["best_epoch"],
                "scores": {"validation_accuracy": best["val_accuracy"], "test_accuracy": scores["accuracy"],
                           "test_balanced_accuracy": scores["balanced_accuracy"], "test_n": scores["n"]},
                "cost": {"target": settings.target, **{k: best[k] for k in ("latency_s", "power_w", "energy_j", "pdp_j")},
                         "source": best["cost_source"]},
                "search": {"study": settings.study_name, "storage": safe_url(settings.storage_url), "trial": best["trial"],
                           "objective": settings.objective, "folder": str(out.resolve())},
                "command": settings.command()}
        model.info = card
        model.save(out / "best.safetensors")
        _write_atomic(out / "best.json", json.dumps(card, indent=2) + "\n")
        summary["best"] = {**_brief(best), "test_accuracy": scores["accuracy"], "test_n": scores["n"],
                           "checkpoint": str((out / "best.safetensors").resolve())}
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _brief(row: dict) -> dict:
    keep = ("trial", "val_accuracy", "latency_s", "power_w", "energy_j", "pdp_j", "cost_source", "params", "macs",
            "snn_accuracy", "cores", "arch", "train_config")
    return {k: row[k] for k in keep if k in row}


def show_study(settings) -> dict:
    """The stored study's best trial and Pareto set (nothing is trained or written)."""
    from edgefer.automl.study import finished_count, open_study

    if settings.storage is None and not (settings.out / "study.db").is_file():
        raise EdgeferError("no study here (run edgefer search first, or pass --storage / --out)", settings.out)
    study = open_study(settings, create=False)
    rows = trial_rows(study)
    best = best_row(rows, settings.objective)
    if best is None:
        raise EdgeferError(f"study {settings.study_name!r} has no completed trial yet")
    return {"study": settings.study_name, "finished_trials": finished_count(study),
            "reference": study.user_attrs.get("reference"), "best": _brief(best),
            "pareto": [_brief(r) for r in pareto_front(rows)]}
