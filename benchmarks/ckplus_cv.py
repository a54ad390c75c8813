"""CK+48 k-fold cross-validation under the study's image-level protocol and the leakage-free one.

Writes runs/bench/ckplus_cv.json (or --out) and prints a table. Resumes per fold.
    python benchmarks/ckplus_cv.py [--arch vgg-ckplus] [--epochs 60] [--device auto]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgefer.data.loaders import load_dataset
from edgefer.data.splits import cv_folds
from edgefer.nn.crossval import cross_validate
from edgefer.nn.recipes import RECIPES
from edgefer.nn.spec import resolve_arch



def pixel_nearest_neighbour(data, folds) -> list[float]:
    """Per-fold accuracy of a 1-nearest-neighbour on raw pixels (Pearson correlation): how far
    matching a test frame to a near-identical training frame gets under each protocol."""
    flat = data.images.reshape(len(data), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    accuracies = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(data)), test)
        nearest = train[(flat[test] @ flat[train].T).argmax(axis=1)]
        accuracies.append(float(np.mean(data.labels[nearest] == data.labels[test])))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="vgg-ckplus", help="preset name or ArchSpec JSON file")
    parser.add_argument("--recipe", default=None, choices=["ckplus-cnn", "ckplus-loihi"],
                        help="training config to use (default: ckplus-loihi for loihi-study, else ckplus-cnn)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the shipped recipe's")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    recipe = RECIPES[args.recipe or ("ckplus-loihi" if args.arch == "loihi-study" else "ckplus-cnn")]
    arch_name = Path(args.arch).stem
    cfg = replace(recipe.config, device=args.device, epochs=args.epochs or recipe.config.epochs)
    data = load_dataset("ckplus")
    rows = {}
    for protocol in ("study", "leakage-free"):
        rows[protocol] = cross_validate(data, resolve_arch(args.arch), cfg, protocol,
                                        args.out / f"cv-{arch_name}" / protocol, args.folds, args.seed,
                                        recipe.input_mode, progress=not args.quiet)
        folds, _ = cv_folds(data.labels, args.folds, args.seed, protocol, data.images)
        rows[protocol]["pixel_1nn_fold_accuracy"] = pixel_nearest_neighbour(data, folds)
    result = {"dataset": "ckplus", "arch": arch_name, "spec": resolve_arch(args.arch).to_dict(), "epochs": cfg.epochs, "folds": args.folds, "seed": args.seed,
              "protocols": rows,
              "leakage_gap_points": 100 * (rows["study"]["mean_accuracy"] - rows["leakage-free"]["mean_accuracy"])}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ckplus_cv_{arch_name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"CK+48 {args.folds}-fold CV, {arch_name}, {cfg.epochs} epochs")
    for col in ("protocol", "mean", "std", "folds", "groups", "pixel 1-NN mean"):
        table.add_column(col)
    for protocol, r in rows.items():
        table.add_row(protocol, f"{100 * r['mean_accuracy']:.2f} %", f"{100 * r['std_accuracy']:.2f}",
                      " ".join(f"{100 * a:.1f}" for a in r["fold_accuracy"]), str(r["groups"] or "-"),
                      f"{100 * np.mean(r['pixel_1nn_fold_accuracy']):.2f} %")
    Console().print(table)
    print(f"leakage gap: {result['leakage_gap_points']:.2f} points; wrote {path}")


if __name__ == "__main__":
    main()
