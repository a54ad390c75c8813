"""``edgefer targets`` and ``edgefer export``: thin CLI over edgefer.targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgefer.console import make_console

ModelOpt = typer.Option(..., "--model", help="Shipped model name or checkpoint path.")


targets_app = typer.Typer(help="The registered targets (and refitting their cost models on your measurements).",
                          invoke_without_command=True, add_completion=False)


@targets_app.callback()
def targets_command(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the registered targets: role, runtime, artifact, what is measured here and what is modeled."""
    if ctx.invoked_subcommand is not None:
        return
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
                   out: Optional[Path] = typer.Option(None, "--out", help="Output folder for the artifact."),
                   bundle: Optional[Path] = typer.Option(None, "--bundle", help="Instead: a folder to copy to the device "
                                                         "(artifact, test images, run_on_device.py)."),
                   data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets (--bundle).")):
    """Export a model for one target (ONNX, OpenVINO IR FP16, TFLite FP32 or full-integer int8, Loihi's NIR); prints
    the artifact manifest. With --bundle: everything to measure it on the real device."""
    from edgefer.errors import EdgeferError
    from edgefer.nn.zoo import load_model
    from edgefer.targets import get_target

    if (out is None) == (bundle is None):
        raise EdgeferError("give one of --out (the artifact) or --bundle (a folder to measure it on the device)")
    chosen = get_target(target)
    if bundle is not None:
        from edgefer.targets.bundle import write_bundle

        manifest = write_bundle(chosen, load_model(model), bundle, model, data_root)
        sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
        return
    artifact = chosen.export(load_model(model), out)
    warnings = [str(v) for v in chosen.check(artifact) if v.severity == "warning"]
    sys.stdout.write(json.dumps({**artifact.to_dict(), "warnings": warnings}, indent=2) + "\n")


@targets_app.command("calibrate")
def calibrate_command(measured: list[Path] = typer.Option(..., "--measured", help="measurement.json from a device "
                                                         "bundle (repeat the option for several)."),
                      out: Path = typer.Option(..., "--out", help="User constants file to write (for --constants)."),
                      json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")):
    """Refit each measured device's cost-model constants on your measurements (published points kept as
    priors) and write them to a constants file that compare and search take with --constants."""
    from edgefer.targets.calibration import calibrate_from_measurements

    report = calibrate_from_measurements(measured, out)
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    for device, r in report["devices"].items():
        print(f"{device}: {r['n_measured']} measurement(s); median error on them {100 * r['before']['mdape_measured']:.0f} % "
              f"-> {100 * r['after']['mdape_measured']:.0f} %, on the published points {100 * r['before']['mdape_published']:.0f} % "
              f"-> {100 * r['after']['mdape_published']:.0f} %; constants {r['constants']}")
    print(f"wrote {out}: use it with edgefer compare / search --constants {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(targets_app, name="targets")
    app.command("export")(export_command)
