"""``edgefer targets``, ``edgefer export``, ``edgefer bench``: thin CLI over edgefer.targets."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer

from edgefer.console import make_console

ModelOpt = typer.Option(..., "--model", help="Shipped model name or checkpoint path.")


def targets_command(json_out: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the edge targets: runtime, artifact, what is measured here and what is modeled."""
    from rich.table import Table

    from edgefer.targets import all_targets
    from edgefer.targets.costmodel import validation_report

    rows = []
    for target in all_targets():
        row = target.describe()
        if target.latency_source == "modeled":
            report = validation_report(target.name)
            row["validation"] = {k: report[k] for k in ("status", "n_fit", "n_holdout", "mdape_fit", "mdape_holdout")}
        rows.append(row)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("target", "artifact", "accuracy", "latency", "available", "cost model validation", title="edge targets")
    for r in rows:
        v = r.get("validation")
        valid = "-" if v is None else (v["status"] if v["mdape_fit"] is None else
                                       f"MdAPE fit {v['mdape_fit']:.0%} (n={v['n_fit']}), held-out "
                                       + ("-" if v["mdape_holdout"] is None else f"{v['mdape_holdout']:.0%}") + f" (n={v['n_holdout']})")
        table.add_row(r["target"], f"{r['artifact']} {r['precision']}", r["accuracy"], r["latency"],
                      "yes" if r["available"] else f"no: {r['why']}", valid)
    make_console().print(table)


def export_command(model: str = ModelOpt,
                   target: str = typer.Option(..., "--target", help="Target name (see `edgefer targets`)."),
                   out: Path = typer.Option(..., "--out", help="Output folder for the artifact.")):
    """Export a model for one target (ONNX, OpenVINO IR FP16, TFLite FP32 or full-integer int8); prints the artifact manifest."""
    from edgefer.nn.zoo import load_model
    from edgefer.targets import get_target

    chosen = get_target(target)
    artifact = chosen.export(load_model(model), out)
    warnings = [str(v) for v in chosen.check(artifact) if v.severity == "warning"]
    sys.stdout.write(json.dumps({**artifact.to_dict(), "warnings": warnings}, indent=2) + "\n")


def bench_command(model: str = ModelOpt,
                  target: str = typer.Option("all", "--target", help="Target name or all."),
                  json_out: bool = typer.Option(False, "--json", help="Print JSON rows."),
                  out: Path = typer.Option(None, "--out", help="Keep the artifacts here (default: a temporary folder)."),
                  runs: int = typer.Option(200, "--runs", min=200, help="Timed runs for measured targets (>= 200)."),
                  threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for the host target (pinned).")):
    """Accuracy of each target's real artifact on the model's held-out test set, plus latency, fps,
    power and energy, each labelled measured or modeled."""
    from edgefer.targets.bench import bench_model, require_known

    if target != "all":
        require_known([target])
    with tempfile.TemporaryDirectory(prefix="edgefer-bench-") as tmp:
        result = bench_model(model, target, out or tmp, runs=runs, threads=threads)
    keys = ("target", "artifact", "format", "precision", "accuracy", "torch_accuracy", "accuracy_drop_points",
            "latency_s", "fps", "power_w", "energy_j", "pdp_j", "source", "status", "why", "citations", "cost_notes")
    rows = [{k: r.get(k) for k in keys} for r in result["rows"]]
    if json_out:
        sys.stdout.write(json.dumps({**{k: v for k, v in result.items() if k != "rows"}, "rows": rows}, indent=2) + "\n")
        return
    make_console().print(format_table(result))


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(result: dict):
    from rich.table import Table

    table = Table("target", "artifact", "accuracy", "drop (pts)", "latency ms", "fps", "power W", "energy mJ", "source",
                  title=f"{result['model']}: held-out n={result['n_test']}, torch accuracy {result['torch_accuracy']:.4f}")
    for r in result["rows"]:
        if r.get("status") != "ok":
            table.add_row(r["target"], "skipped", r.get("why") or "", "", "", "", "", "", "")
            continue
        table.add_row(r["target"], f"{r['format']} {r['precision']}", _fmt(r["accuracy"], ".4f"),
                      _fmt(r["accuracy_drop_points"], "+.2f"), _fmt(r["latency_s"] * 1e3, ".3f"), _fmt(r["fps"], ".0f"),
                      _fmt(r["power_w"], ".2f"), _fmt(None if r["energy_j"] is None else r["energy_j"] * 1e3, ".3f"),
                      r["source"])
    return table


def register(app: typer.Typer) -> None:
    app.command("targets")(targets_command)
    app.command("export")(export_command)
    app.command("bench")(bench_command)
