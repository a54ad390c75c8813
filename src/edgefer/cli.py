"""The ``edgefer`` command line: parses arguments and calls the packages."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgefer.bench.command import register as register_bench
from edgefer.console import make_console
from edgefer.automl.command import search_app
from edgefer.errors import EdgeferError
from edgefer.live.command import live_command
from edgefer.snn.cli import snn_app
from edgefer.targets.command import register as register_targets

app = typer.Typer(help="Real-time facial expression recognition at the edge.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
# Native libraries' own log lines (FFmpeg's decoder complaints, OpenCV, TensorFlow Lite / absl) bury the
# CLI's output: quiet by default, read when those libraries load (after this module, lazily).
QUIET_ENVIRONMENT = {"OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR", "TF_CPP_MIN_LOG_LEVEL": "3",
                     "GLOG_minloglevel": "3"}
for _name, _value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)


@app.callback()
def _global_options(verbose: bool = typer.Option(False, "--verbose", help="Show the native libraries' own log "
                                                 "lines (FFmpeg, OpenCV, TensorFlow Lite, absl).")):
    if verbose:
        for name, value in QUIET_ENVIRONMENT.items():
            if os.environ.get(name) == value:
                del os.environ[name]
console = make_console()

DataOpt = typer.Option(..., "--data", help="Named dataset (ckplus, fer2013), an npz, a Kaggle fer2013.csv or an image folder.")
DataRootOpt = typer.Option(None, "--data-root", help="Folder of named datasets (default: $EDGEFER_DATA, else ../shared/data).")
InputOpt = typer.Option(None, "--input", help="gray | edges | edges-x2 (default: the model's own).")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


@app.command()
def models(details: bool = typer.Option(False, "--details", help="Show each model card's scores.")):
    """List the shipped pretrained models, one per line."""
    from edgefer.nn.zoo import model_card, shipped_models

    for name in shipped_models():
        if not details:
            print(name)
            continue
        card = model_card(name)
        scores = card.get("scores", {})
        print(f"{name}\t{card.get('data', {}).get('dataset', '?')}\tinput={card.get('input', '?')}\t"
              f"params={card.get('params', '?')}\tmacs={card.get('macs', '?')}\ttest_accuracy={scores.get('test_accuracy')}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", help="Shipped model name or checkpoint path."),
    data: str = DataOpt,
    split: Optional[str] = typer.Option(None, "--split", help="train | test | private-test for data with official splits (default test)."),
    input_mode: Optional[str] = InputOpt,
    heldout: bool = typer.Option(False, "--heldout", help="Only the model's own held-out test images (data = its training dataset)."),
    data_root: Optional[Path] = DataRootOpt,
    classes: str = typer.Option("all", "--classes", help="all: data classes the model does not know are an error | "
                                "shared: score only the classes both have (argmax over their logits)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Accuracy of a model on a dataset (``--json``: accuracy, n, per-class, confusion)."""
    from edgefer.data.loaders import default_split, load_dataset
    from edgefer.nn.evaluate import CLASS_MODES, evaluate
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.nn.zoo import load_model

    if classes not in CLASS_MODES:
        raise EdgeferError(f"--classes must be one of {', '.join(CLASS_MODES)}, got {classes!r}")
    fer = load_model(model)
    if heldout:
        dataset = fer.info.get("data", {}).get("dataset")
        if dataset != data:
            raise EdgeferError(f"--heldout needs --data {dataset or '<the dataset the model was trained on>'}")
        dataset_ = heldout_test_set(fer, data_root)
    else:
        if split is None:
            split = default_split(data)
        from edgefer.data.framing import model_framings

        dataset_ = load_dataset(data, split, data_root, model_framings(fer.info))  # photos cropped as the model expects
    scores = {"model": model, "data": dataset_.source, **evaluate(fer, dataset_, input_mode, classes)}
    if as_json:
        _print_json(scores)
        return
    table = Table(title=f"{model} on {dataset_.source} ({scores['input']})")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, acc in scores["per_class_accuracy"].items():
        table.add_row(name, f"{acc:.3f}")
    console.print(table)
    if scores["dropped_data_classes"] or scores["dropped_model_classes"]:
        dropped = ", ".join(f"{c} ({n} images)" for c, n in scores["dropped_data_classes"].items()) or "none"
        console.print(f"shared classes only: dropped data classes {dropped}; "
                      f"model classes not scored {', '.join(scores['dropped_model_classes']) or 'none'}")
    console.print(f"accuracy {scores['accuracy']:.4f} on n={scores['n']} (balanced {scores['balanced_accuracy']:.4f}, "
                  f"input sparsity {scores['input_sparsity']:.3f})")


@app.command()
def train(
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Reproduce a shipped model (see `edgefer models`); recipes are listed in edgefer.nn.recipes."),
    out: Path = typer.Option(Path("runs/model.safetensors"), "--out", help="Checkpoint to write (a model card JSON lands beside it)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    init: Optional[Path] = typer.Option(None, "--init", help="Checkpoint to fine-tune (recipes that fine-tune another)."),
    teacher: list[Path] = typer.Option([], "--teacher", help="Checkpoint to distil from, repeated once per teacher (recipes that distil)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    data_root: Optional[Path] = DataRootOpt,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Train a model from a recipe and write checkpoint + model card."""
    from edgefer.nn.recipes import RECIPES, run_recipe

    if recipe is None:
        raise EdgeferError(f"choose a recipe with --recipe ({', '.join(RECIPES)}); custom runs: edgefer cv or the Python API")
    card = run_recipe(recipe, out, data_root, device, not quiet, epochs, init, teacher)
    console.print(f"wrote {out} (test accuracy {card['scores']['test_accuracy']:.4f} on n={card['scores']['test_n']})")


@app.command()
def framing(
    model: str = typer.Option(..., "--model", help="Shipped model name or checkpoint path."),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write: the same weights, the fitted framing in its card."),
    sample: int = typer.Option(1000, "--sample", help="Training images to fit on."),
    seed: int = typer.Option(0, "--seed"),
    data_root: Optional[Path] = DataRootOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Fit the crop framing of each detector model to the model's training data and record it in its card."""
    from edgefer.data.faces import FRAMING_KEYS, get_detector
    from edgefer.data.framing import fit_framing
    from edgefer.nn.recipes import training_set
    from edgefer.nn.zoo import ZOO_DIR, load_model, shipped_models

    fer = load_model(model)
    images = training_set(fer, data_root).images
    fitted = {name: fit_framing(images, get_detector(name), sample, seed) for name in FRAMING_KEYS}
    recorded = {"framing": fitted, "framing_command": f"edgefer framing --model {model} --sample {sample} --seed {seed}"}
    # The card beside the checkpoint may hold more than its header (notes, lineage): keep all of it.
    card_file = ZOO_DIR / f"{model}.json" if model in shipped_models() else Path(model).with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.is_file() else dict(fer.info)
    fer.info = {**fer.info, **recorded}
    fer.save(out)
    out.with_suffix(".json").write_text(json.dumps({**card, **recorded}, indent=2) + "\n")
    if as_json:
        _print_json(fitted)
        return
    table = Table(title=f"crop framing of {model} (median over {sample} training images)")
    for column in ("detector model", "found", "scale", "dx", "dy", "scale quartiles", "eye angle quartiles"):
        table.add_column(column, justify="left" if column == "detector model" else "right")
    for name, fit in fitted.items():
        q = fit["quartiles"]
        table.add_row(name, f"{fit['found_rate']:.1%}", f"{fit['scale']:.3f}", f"{fit['dx']:+.3f}", f"{fit['dy']:+.3f}",
                      f"{q['scale'][0]:.2f}-{q['scale'][1]:.2f}", f"{q['eye_angle'][0]:+.1f}..{q['eye_angle'][1]:+.1f}")
    console.print(table)
    console.print(f"wrote {out}")


@app.command()
def cv(
    data: str = typer.Option("ckplus", "--data", help="Dataset to cross-validate (named or path)."),
    arch: str = typer.Option("vgg-ckplus", "--arch", help="Preset (vgg-ckplus, loihi-study, vgg-fer2013) or ArchSpec JSON."),
    protocol: str = typer.Option("study", "--protocol", help="study (image-level) | leakage-free (near-duplicate groups)."),
    folds: int = typer.Option(5, "--folds"),
    seed: int = typer.Option(123, "--seed"),
    epochs: int = typer.Option(60, "--epochs"),
    input_mode: str = typer.Option("gray", "--input"),
    device: str = typer.Option("auto", "--device"),
    out: Path = typer.Option(Path("runs/cv"), "--out", help="Folder for per-fold results (a rerun resumes)."),
    data_root: Optional[Path] = DataRootOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """k-fold cross-validation, resumable per fold."""
    from edgefer.data.loaders import default_split, load_dataset
    from edgefer.nn.crossval import cross_validate
    from edgefer.nn.recipes import RECIPES
    from edgefer.nn.spec import resolve_arch

    dataset = load_dataset(data, default_split(data, "training"), data_root)
    cfg = replace(RECIPES["ckplus-cnn"].config, epochs=epochs, device=device)
    summary = cross_validate(dataset, resolve_arch(arch), cfg, protocol, out / protocol, folds, seed, input_mode,
                             progress=not as_json)
    if as_json:
        _print_json(summary)
    else:
        console.print(f"{protocol}: {folds}-fold mean accuracy {summary['mean_accuracy']:.4f} "
                      f"± {summary['std_accuracy']:.4f} (folds {[round(a, 4) for a in summary['fold_accuracy']]})")


@app.command()
def data(
    data: str = DataOpt,
    split: Optional[str] = typer.Option(None, "--split"),
    data_root: Optional[Path] = DataRootOpt,
    as_json: bool = typer.Option(False, "--json"),
):
    """Describe a dataset: size, classes, input sparsity of gray and edge-map inputs."""
    from edgefer.data.loaders import load_dataset
    from edgefer.data.preprocess import INPUT_MODES, input_sparsity, prepare_input
    from edgefer.data.splits import near_duplicate_groups

    dataset = load_dataset(data, split, data_root)
    info = {"source": dataset.source, "n": len(dataset), "classes": dataset.class_counts(),
            "input_sparsity": {m: input_sparsity(prepare_input(dataset.images, m)) for m in INPUT_MODES}}
    if len(dataset) <= 5000:
        info["near_duplicate_groups"] = int(near_duplicate_groups(dataset.images).max() + 1)
    if as_json:
        _print_json(info)
    else:
        console.print(info)


@app.command()
def arch(name: str = typer.Argument(..., help="Preset or ArchSpec JSON file."), as_json: bool = typer.Option(False, "--json")):
    """Show an architecture's layers, parameters, MACs and neurons."""
    from edgefer.nn.spec import resolve_arch

    summary = resolve_arch(name).summary()
    if as_json:
        _print_json(summary)
        return
    table = Table(title=name)
    for col in ("layer", "output", "params", "MACs", "neurons"):
        table.add_column(col, justify="right" if col not in ("layer", "output") else "left")
    for row in summary["layers"]:
        table.add_row(row["name"], "x".join(map(str, row["output"])), f"{row['params']:,}", f"{row['macs']:,}", f"{row['neurons']:,}")
    table.add_row("total", "", f"{summary['params']:,}", f"{summary['macs']:,}", f"{summary['neurons']:,}")
    console.print(table)


# Commands of the other packages; their modules are light (torch and runtimes load on use).
app.command("live")(live_command)
app.add_typer(snn_app, name="snn")
register_targets(app)
app.add_typer(search_app, name="search")
register_bench(app)


def main() -> None:
    """Entry point: usage errors are click's (standalone mode); ours print one line and exit 2."""
    # JAX (imported by litert-torch for the TFLite exports) warns at every fork of the process; the
    # fork is OpenVINO's telemetry sender, a child that runs no JAX code.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    try:
        app()
    except EdgeferError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
