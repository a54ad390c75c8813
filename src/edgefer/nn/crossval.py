"""k-fold cross-validation under the study or the leakage-free protocol, resumable per fold."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgefer.data.dataset import FaceDataset
from edgefer.data.splits import cv_folds, holdout_split
from edgefer.nn.evaluate import evaluate
from edgefer.nn.spec import ArchSpec
from edgefer.nn.train import TrainConfig, train


def cross_validate(
    data: FaceDataset, spec: ArchSpec, cfg: TrainConfig, protocol: str, out_dir: str | Path,
    k: int = 5, seed: int = 123, input_mode: str = "gray", val_fraction: float = 0.1, progress: bool = True,
) -> dict:
    """Train and test on each of k folds; fold results land in ``out_dir/fold<i>.json`` as they
    finish, and a rerun skips folds already there (same protocol, seed and k)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds, groups = cv_folds(data.labels, k, seed, protocol, data.images)
    everything = np.arange(len(data))
    results = []
    for i, test_index in enumerate(folds):
        path = out_dir / f"fold{i}.json"
        key = {"protocol": protocol, "k": k, "seed": seed, "arch": spec.to_dict(), "input": input_mode,
               "config": cfg.to_dict()}
        if path.is_file():
            done = json.loads(path.read_text())
            if done.get("key") == key:
                results.append(done)
                continue
        pool = np.setdiff1d(everything, test_index)
        train_pos, val_pos = holdout_split(data.labels[pool], val_fraction, seed + 1 + i,
                                           None if groups is None else groups[pool])
        result = train(spec, data.subset(pool[train_pos]), data.subset(pool[val_pos]),
                       replace(cfg, seed=cfg.seed + i), input_mode, progress,
                       description=f"{protocol} fold {i + 1}/{k}")
        scores = evaluate(result.model, data.subset(test_index))
        record = {"key": key, "fold": i, "n_train": int(len(train_pos)), "n_val": int(len(val_pos)),
                  "n_test": int(len(test_index)), "best_epoch": result.best_epoch,
                  "val_accuracy": result.best_val_accuracy, "test_accuracy": scores["accuracy"],
                  "test_balanced_accuracy": scores["balanced_accuracy"]}
        path.write_text(json.dumps(record, indent=2) + "\n")
        results.append(record)
    accs = np.array([r["test_accuracy"] for r in results])
    return {"protocol": protocol, "k": k, "seed": seed, "input": input_mode,
            "groups": None if groups is None else int(groups.max() + 1),
            "mean_accuracy": float(accs.mean()), "std_accuracy": float(accs.std(ddof=1)) if k > 1 else 0.0,
            "fold_accuracy": accs.tolist(), "folds": results}
