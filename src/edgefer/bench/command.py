"""``edgefer compare`` and ``edgefer demo`` (the README's main job): thin typer wrappers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgefer.console import make_console

DEMO_VIDEO = Path("video") / "WolfgangLanger_Pexels.mp4"  # in the data folder (see ../shared/data/README.md)
DEMO_LIVE_MODEL = "fer2013-cnn"  # trained in the wild: the right model for a real video


def _print_table(summary: dict, console) -> None:
    from rich.table import Table

    from edgefer.bench.report import TABLE_HEADER, explain_headline, table_rows

    rows = json.loads(Path(summary["files"]["results_json"]).read_text())
    table = Table(*TABLE_HEADER[:-1], title=f"edgefer compare {summary['dataset']}")
    for cells in table_rows(rows):
        table.add_row(*cells[:-1])
    console.print(table)
    for line in explain_headline(summary, rows):
        console.print(f"- {line}")


def compare_command(
    dataset: str = typer.Option(..., "--dataset", help="ckplus | fer2013."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json, results.csv, report.md, report.html."),
    use_shipped: bool = typer.Option(True, "--use-shipped/--search",
                                     help="Shipped models (default), or each target's AutoML result (edgefer search)."),
    objective: str = typer.Option("hierarchical", "--objective", help="Which searches --search reads: hierarchical | pareto."),
    timesteps: int = typer.Option(50, "--timesteps", "-T", help="SNN timesteps per image (Loihi rows)."),
    runs: int = typer.Option(200, "--runs", min=200, help="Timed runs of measured targets (>= 200)."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads of the host target (pinned)."),
    fresh: bool = typer.Option(False, "--fresh", help="Recompute every stage (ignore OUT/cache)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
):
    """The study's comparison: every target's accuracy, latency, FPS, power, energy, each with its source."""
    from edgefer.bench.compare import CompareConfig, run_compare, searched_models

    config = CompareConfig(dataset=dataset, timesteps=timesteps, runs=runs, threads=threads, data_root=data_root,
                           fresh=fresh, models={} if use_shipped else searched_models(dataset, objective))
    summary = run_compare(config, out, progress=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    console = make_console()
    _print_table(summary, console)
    console.print(f"report: {summary['files']['report_html']} (also report.md, results.json, results.csv)")


def demo_video(data_root: Path | None) -> Path:
    from edgefer.data.loaders import default_data_roots
    from edgefer.errors import EdgeferError

    roots = [Path(data_root)] if data_root is not None else default_data_roots()
    for root in roots:
        if (root / DEMO_VIDEO).is_file():
            return root / DEMO_VIDEO
    raise EdgeferError(f"demo video not found; looked at {', '.join(str(r / DEMO_VIDEO) for r in roots)}. "
                       "Pass one with --video or set EDGEFER_DATA")


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the reports and the annotated video."),
    video: Optional[Path] = typer.Option(None, "--video", help=f"Video for the live pipeline (default: DATA/{DEMO_VIDEO})."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
):
    """The main job on shipped models: the CK+48 comparison report and the live pipeline on a real video."""
    from edgefer.bench.compare import CompareConfig, run_compare
    from edgefer.live.pipeline import LiveConfig, format_summary, run_live

    console = make_console()
    source = video or demo_video(data_root)
    summary = run_compare(CompareConfig(dataset="ckplus", data_root=data_root), out / "ckplus")
    _print_table(summary, console)
    live_out, live_jsonl = out / "live.mp4", out / "live.jsonl"
    live = run_live(str(source), LiveConfig(model=DEMO_LIVE_MODEL, out=live_out, jsonl=live_jsonl, show=False))
    (out / "live_summary.json").write_text(json.dumps(live, indent=2) + "\n")
    console.print(f"live ({DEMO_LIVE_MODEL} on {source}): {format_summary(live)}")
    console.print(f"report: {summary['files']['report_html']}")
    console.print(f"also: {summary['files']['report_md']}, {summary['files']['results_json']}, {live_out}, {live_jsonl}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
    app.command("demo")(demo_command)
