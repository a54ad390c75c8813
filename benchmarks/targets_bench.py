"""Every registered target for the shipped FER models: accuracy of each real artifact on the model's held-out
test set (and its drop vs torch), latency / fps / power / energy labelled measured or modeled, plus
each device cost model's error on published measurements (fit and held-out points separately).

Writes runs/bench/targets_<model>.json and runs/bench/targets_validation.json; prints tables.
    python benchmarks/targets_bench.py [--models ckplus-cnn fer2013-cnn] [--threads 1] [--runs 200]
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

from edgefer.bench.command import format_table
from edgefer.bench.rows import bench_model
from edgefer.targets.costmodel import device_table, validation_report

INT8_MAX_DROP_POINTS = 1.0  # the bound on the full-integer artifact's accuracy drop


def validation_table(reports: list[dict]) -> Table:
    table = Table("device", "status", "MdAPE fit", "n fit", "MdAPE held-out", "n held-out", "MdAPE all", "fitted constants",
                  title="cost models vs published latencies")
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for r in reports:
        fitted = ", ".join(f"{k}={v:.3g}" for k, v in r["fitted"].items())
        table.add_row(r["device"], r["status"], pct(r["mdape_fit"]), str(r["n_fit"]), pct(r["mdape_holdout"]),
                      str(r["n_holdout"]), pct(r["mdape_all"]), fitted)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["ckplus-cnn", "fer2013-cnn"])
    parser.add_argument("--target", default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    console = Console(width=160)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = [validation_report(d) for d in device_table()]  # every registered device with a cost model
    (args.out / "targets_validation.json").write_text(json.dumps(reports, indent=2) + "\n")
    console.print(validation_table(reports))
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    for name in args.models:
        started = time.time()
        result = bench_model(name, args.target, args.out / f"artifacts_{name}", runs=args.runs, threads=args.threads)
        result.update({"machine": machine, "seconds": time.time() - started,
                       "validation": {r["device"]: {k: r[k] for k in ("status", "mdape_fit", "mdape_holdout", "mdape_all")}
                                      for r in reports}})
        coral = next((r for r in result["rows"] if r.target == "coral" and r.ok), None)
        if coral:
            result["int8_drop_within_bound"] = coral.accuracy_drop_points <= INT8_MAX_DROP_POINTS
        path = args.out / f"targets_{name}.json"
        path.write_text(json.dumps({**result, "rows": [r.to_dict() for r in result["rows"]]}, indent=2) + "\n")
        console.print(format_table(result))
        console.print(f"wrote {path}" + ("" if not coral else
                      f"; int8 drop {coral.accuracy_drop_points:+.2f} points (bound {INT8_MAX_DROP_POINTS})"))


if __name__ == "__main__":
    main()
