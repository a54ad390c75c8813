"""``edgefer search``: run or resume a hardware-aware search; ``edgefer search show``: its results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgefer.console import make_console

search_app = typer.Typer(help="Hardware-aware architecture search (Optuna) for one edge target.",
                         invoke_without_command=True, add_completion=False)

TargetOpt = typer.Option(None, "--target", help="A searchable target (`edgefer targets` lists them).")
DatasetOpt = typer.Option("ckplus", "--dataset", help="A named dataset (ckplus, fer2013).")
ObjectiveOpt = typer.Option("hierarchical", "--objective", help="hierarchical (accuracy, then power-delay product) | pareto (accuracy, latency, energy).")
StorageOpt = typer.Option(None, "--storage", help="Optuna RDB URL, e.g. postgresql://user@host/db (default: SQLite in --out).")
OutOpt = typer.Option(None, "--out", help="Folder for the study's files (default runs/search/<dataset>-<target>-<objective>).")


def _settings(target: Optional[str], **options):
    from edgefer.automl.study import SearchSettings
    from edgefer.errors import EdgeferError
    from edgefer.targets import target_names

    if target is None:
        raise EdgeferError(f"choose a target with --target ({', '.join(target_names(searchable=True))})")
    return SearchSettings(target=target, **options)


def _print_rows(title: str, rows: list[dict], reference: dict | None) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("trial", "val acc", "latency", "energy", "power", "params", "arch"):
        table.add_column(column, justify="left" if column == "arch" else "right")
    for r in rows:
        arch = r["arch"]
        table.add_row(str(r["trial"]), f"{100 * r['val_accuracy']:.2f} %", f"{1e3 * r['latency_s']:.3g} ms",
                      f"{1e3 * r['energy_j']:.3g} mJ", f"{r['power_w']:.3g} W", f"{r['params']:,}",
                      f"{arch['filters']} x{arch['convs_per_block'][0]} k{arch['kernel_size']} {arch['downsample']}"
                      f"{' bn' if arch['batchnorm'] else ''} dense {arch['dense']} {arch['head']}")
    if reference:
        table.add_row(reference["model"], f"{100 * reference['val_accuracy']:.2f} %", f"{1e3 * reference['latency_s']:.3g} ms",
                      f"{1e3 * reference['energy_j']:.3g} mJ", f"{reference['power_w']:.3g} W", "", "shipped reference")
    make_console().print(table)


@search_app.callback()
def search_command(
    ctx: typer.Context,
    target: Optional[str] = TargetOpt,
    dataset: str = DatasetOpt,
    trials: int = typer.Option(30, "--trials", help="Finished trials the study should have (a rerun resumes up to N)."),
    objective: str = ObjectiveOpt,
    storage: Optional[str] = StorageOpt,
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Start no new trial after this many seconds."),
    threads: int = typer.Option(1, "--threads", help="Torch threads of this worker."),
    min_epochs: int = typer.Option(8, "--min-epochs", help="Smallest searched epoch budget."),
    max_epochs: int = typer.Option(20, "--max-epochs", help="Largest searched epoch budget."),
    tolerance: float = typer.Option(0.01, "--tolerance", help="hierarchical: accuracy step that outweighs any PDP difference."),
    heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between a running trial's heartbeats; a trial silent for twice this is marked failed."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on the first N training images only (quick checks)."),
    allow: list[str] = typer.Option([], "--allow", help="A warning that would rule a spec out, accepted in this search "
                                    "(repeatable; loihi: multi-chip, priced with every chip's static power)."),
    out: Optional[Path] = OutOpt,
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
    constants: Optional[Path] = typer.Option(None, "--constants", help="Cost-model constants refitted on your "
                                             "measurements (edgefer targets calibrate)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Run (or resume) a search: best ArchSpec and checkpoint, trial table, Pareto plot in --out."""
    if ctx.invoked_subcommand is not None:
        return
    from edgefer.automl.search import run_search
    from edgefer.automl.space import Budget

    settings = _settings(target, dataset=dataset, trials=trials, objective=objective, storage=storage, out=out,
                         timeout_s=timeout, threads=threads, budget=Budget(min_epochs, max_epochs), tolerance=tolerance,
                         heartbeat_s=heartbeat, subset=subset, data_root=data_root, progress=not (quiet or as_json),
                         constants=constants, allowed_warnings=tuple(allow))
    summary = run_search(settings)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    best = summary["best"]
    if best is not None:
        _print_rows(f"{settings.study_name}: Pareto set ({len(summary['pareto'])})", summary["pareto"], summary["reference"])
        make_console().print(f"best trial {best['trial']}: validation {100 * best['val_accuracy']:.2f} %, held-out test "
                         f"{100 * best['test_accuracy']:.2f} % (n={best['test_n']}); wrote {settings.out}")
    else:
        make_console().print(f"no trial completed yet; wrote {settings.out}")


@search_app.command("show")
def show_command(
    target: Optional[str] = TargetOpt,
    dataset: str = DatasetOpt,
    objective: str = ObjectiveOpt,
    storage: Optional[str] = StorageOpt,
    out: Optional[Path] = OutOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """A stored study's best trial and Pareto set."""
    from edgefer.automl.report import show_study

    result = show_study(_settings(target, dataset=dataset, objective=objective, storage=storage, out=out))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print_rows(f"{result['study']}: best of {result['finished_trials']} trials", [result["best"]], result["reference"])
    _print_rows(f"Pareto set ({len(result['pareto'])})", result["pareto"], None)
