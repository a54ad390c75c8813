"""One row per target for a model: accuracy of the real artifact on the model's held-out test set,
latency / fps / power / energy with their source (measured | modeled)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.targets import TARGET_NAMES, get_target
from edgefer.targets.base import errors_of


def heldout_inputs(model, data_root=None):
    """(prepared inputs, labels as model indices) of the model's held-out test set."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.evaluate import model_labels
    from edgefer.nn.recipes import heldout_test_set

    test = heldout_test_set(model, data_root)
    return prepare_input(test.images, model.input_mode), model_labels(model, test)


def bench_target(model, target_name: str, out_dir: str | Path, inputs: np.ndarray, labels: np.ndarray,
                 torch_accuracy: float, runs: int = 200, threads: int = 1) -> dict:
    target = get_target(target_name, runs=runs, threads=threads) if target_name == "host" else \
        get_target(target_name, runs=runs) if target_name == "gpu" else get_target(target_name)
    row = {"target": target.name, "label": target.label, "runtime": target.runtime}
    ok, why = target.available()
    violations = target.check(model.spec)
    row["violations"] = [str(v) for v in violations]
    if not ok or errors_of(violations):
        return {**row, "status": "skipped", "why": why if not ok else "; ".join(row["violations"]),
                "accuracy": None, "latency_s": None, "fps": None, "power_w": None, "energy_j": None, "source": None}
    started = time.perf_counter()
    artifact = target.export(model, Path(out_dir) / target.name)
    export_s = time.perf_counter() - started
    logits = target.run(artifact, inputs)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    cost = target.cost(artifact)
    return {**row, "status": "ok", "artifact": str(artifact.path), "format": artifact.format,
            "precision": artifact.precision, "export_s": export_s,
            "accuracy": accuracy, "accuracy_source": "measured", "n": int(len(labels)),
            "torch_accuracy": torch_accuracy, "accuracy_drop_points": 100 * (torch_accuracy - accuracy),
            "accuracy_note": target.accuracy_note,
            "latency_s": cost.latency_s, "fps": cost.fps, "power_w": cost.power_w, "energy_j": cost.energy_j,
            "pdp_j": cost.pdp_j, "source": cost.source, "citations": list(cost.citations),
            "cost_breakdown": {k: v for k, v in cost.breakdown.items() if k != "layers"}, "cost_notes": cost.notes}


def bench_model(model_name: str, targets: str | list[str], out_dir: str | Path, runs: int = 200, threads: int = 1,
                data_root=None) -> dict:
    from edgefer.nn.zoo import load_model

    names = list(TARGET_NAMES) if targets == "all" else ([targets] if isinstance(targets, str) else list(targets))
    for name in names:
        get_target(name)  # unknown names fail before any work
    model = load_model(model_name)
    inputs, labels = heldout_inputs(model, data_root)
    torch_accuracy = float(np.mean(model.logits(inputs).argmax(axis=1) == labels))
    rows = [bench_target(model, n, out_dir, inputs, labels, torch_accuracy, runs, threads) for n in names]
    return {"model": model_name, "n_test": int(len(labels)), "torch_accuracy": torch_accuracy, "rows": rows}


def require_known(names):
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown:
        raise EdgeferError(f"unknown target(s) {unknown}; choose from {', '.join(TARGET_NAMES)} or all")
