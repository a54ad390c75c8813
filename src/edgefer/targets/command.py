"""``edgefer targets`` and ``edgefer export``: thin CLI over edgefer.targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from edgefer.console import make_console

ModelOpt = typer.Option(..., "--model", help="Shipped model name or checkpoint path.")


def targets_command(json_out: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the registered targets: role, runtime, artifact, what is measured here and what is modeled."""
    from rich.table import Table

    from edgefer.targets import all_targets

    rows = []
    for target in all_targets():
        row = target.describe()
        validation = target.validation()
        if validation is not None:
            row["validation"] = validation
        rows.append(row)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("target", "role", "artifact", "accuracy", "latency", "available", "cost model validation", title="targets")
    for r in rows:
        v = r.get("validation")
        valid = "-" if v is None else (v["status"] if v["mdape_fit"] is None else
                                       f"MdAPE fit {v['mdape_fit']:.0%} (n={v['n_fit']}), held-out "
                                       + ("-" if v["mdape_holdout"] is None else f"{v['mdape_holdout']:.0%}") + f" (n={v['n_holdout']})")
        table.add_row(r["target"], r["role"], f"{r['artifact']} {r['precision']}", r["accuracy"], r["latency"],
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


def register(app: typer.Typer) -> None:
    app.command("targets")(targets_command)
    app.command("export")(export_command)
