"""Hardware-aware search on CK+48 for each edge target, one study after another (one process, so
one search at a time on a shared machine): best validation and held-out test accuracy, its modeled
latency / energy against the shipped reference on the same cost model, Pareto front size, wall time.

Writes runs/bench/automl_<target>.json and prints a table. Studies live in runs/search/ (SQLite):
rerunning resumes each study up to --trials finished trials.
    python benchmarks/automl_search.py [--targets coral ncs2 ...] [--trials 30]   (default: every searchable target)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgefer.automl.search import run_search
from edgefer.automl.space import Budget
from edgefer.automl.study import SearchSettings
from edgefer.targets import target_names


def result_table(results: list[dict]) -> Table:
    table = Table("target", "trials", "best val", "best test", "latency", "ref latency", "energy", "ref energy",
                  "Pareto", "search wall", title="hardware-aware search on CK+48 (latency and energy modeled)")
    for r in results:
        best, ref = r["best"], r["reference"]
        table.add_row(r["target"] + (f" ({r['budget_epochs'][0]}-{r['budget_epochs'][1]} ep)" if "budget_epochs" in r else ""),
                      str(r["finished_trials"]), f"{100 * best['val_accuracy']:.2f} %",
                      f"{100 * best['test_accuracy']:.2f} % (n={best['test_n']})",
                      f"{1e3 * best['latency_s']:.3g} ms", f"{1e3 * ref['latency_s']:.3g} ms ({ref['model']})",
                      f"{1e3 * best['energy_j']:.3g} mJ", f"{1e3 * ref['energy_j']:.3g} mJ",
                      str(len(r["pareto"])), f"{r['span_seconds'] / 60:.1f} min")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", nargs="+", default=None, help="default: every searchable target")
    parser.add_argument("--dataset", default="ckplus")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--min-epochs", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=None, help="per target: start no new trial after this many seconds")
    parser.add_argument("--tag", default="", help="a second study per target (other budget): runs/search/<study>-<tag>, automl_<target>-<tag>.json")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    console = Console(width=160)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for target in args.targets or target_names(searchable=True):
        name = f"{target}-{args.tag}" if args.tag else target
        out = Path("runs/search") / f"{args.dataset}-{name}-hierarchical" if args.tag else None
        settings = SearchSettings(args.dataset, target, args.trials, out=out, threads=args.threads,
                                  timeout_s=args.timeout, budget=Budget(args.min_epochs, args.max_epochs))
        started = time.time()
        summary = run_search(settings)
        summary.update({
            "wall_seconds_this_run": time.time() - started,
            "budget_epochs": [args.min_epochs, args.max_epochs],
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                        "load_average_1min_at_end": os.getloadavg()[0]},
        })
        (args.out / f"automl_{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
        results.append(summary)
        console.print(result_table([summary]))
    console.print(result_table(results))


if __name__ == "__main__":
    main()
