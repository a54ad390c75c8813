"""Train the shipped models from their recipes, test each, write model cards and a JSON summary.

    python benchmarks/train_shipped.py [--recipes ckplus-cnn ckplus-loihi fer2013-cnn-base] [--out runs/zoo]
        [--teachers T1 T2 T3]

A recipe that fine-tunes another starts from that recipe's checkpoint in --out (train the chain in
order: fer2013-cnn-base, -finetuned, -distilled, fer2013-cnn); a recipe that distils takes the
--teachers checkpoints. Copy a checkpoint and its card into src/edgefer/models/ to ship it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgefer.nn.recipes import RECIPES, run_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (smoke runs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/zoo"))
    parser.add_argument("--teachers", nargs="*", type=Path, default=[], help="checkpoints for the recipes that distil")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    cards = {}
    for name in args.recipes:
        recipe = RECIPES[name]
        init = args.out / f"{recipe.init_recipe}.safetensors" if recipe.init_recipe else None
        cards[name] = run_recipe(name, args.out / f"{name}.safetensors", device=args.device,
                                 progress=not args.quiet, epochs=args.epochs, init=init,
                                 teachers=args.teachers if recipe.teacher_commands else ())
    summary_path = args.out / ("train_" + "_".join(args.recipes) + ".json")
    summary_path.write_text(json.dumps(cards, indent=2) + "\n")
    table = Table(title="shipped models")
    for col in ("model", "params", "MACs", "val acc", "test acc", "test n", "train s"):
        table.add_column(col)
    for name, c in cards.items():
        s = c["scores"]
        table.add_row(name, f"{c['params']:,}", f"{c['macs'] / 1e6:.1f} M", f"{100 * (s['validation_accuracy'] or 0):.2f}",
                      f"{100 * s['test_accuracy']:.2f}", str(s["test_n"]), str(c["train_seconds"]))
    Console().print(table)
    print(f"wrote {summary_path}")


if __name__ == "__main__":
    main()
