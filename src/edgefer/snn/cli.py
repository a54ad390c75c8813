"""``edgefer snn``: evaluate a converted spiking network, export it to NIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgefer.snn import STUDY_TIMESTEPS

snn_app = typer.Typer(help="Spiking networks for Loihi: conversion, simulation, modeled cost, NIR export.",
                      no_args_is_help=True, add_completion=False)


def _load(model: str, data: str, split: Optional[str], heldout: bool, data_root: Optional[Path]):
    from edgefer.data.loaders import default_split, load_dataset
    from edgefer.errors import EdgeferError
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.nn.zoo import load_model

    fer = load_model(model)
    if heldout:
        dataset = fer.info.get("data", {}).get("dataset")
        if dataset != data:
            raise EdgeferError(f"--heldout needs --data {dataset or '<the dataset the model was trained on>'}")
        return fer, heldout_test_set(fer, data_root)
    if split is None:
        split = default_split(data)
    return fer, load_dataset(data, split, data_root)


@snn_app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., "--model", help="Shipped model name or checkpoint path (a ReLU CNN without max-pool)."),
    data: str = typer.Option(..., "--data", help="Named dataset, npz, Kaggle csv or image folder."),
    timesteps: int = typer.Option(STUDY_TIMESTEPS, "--timesteps", "-T", help="Timesteps per image."),
    input_mode: Optional[str] = typer.Option(None, "--input", help="gray | edges (default: the model's own)."),
    split: Optional[str] = typer.Option(None, "--split", help="train | test | private-test for data with official splits."),
    heldout: bool = typer.Option(False, "--heldout", help="Only the model's own held-out test images."),
    precision: str = typer.Option("loihi", "--precision", help="loihi (8-bit weights, integer state) | float."),
    encoding: str = typer.Option("rate", "--encoding", help="rate (deterministic) | poisson."),
    readout: str = typer.Option("spikes", "--readout", help="spikes (output counts) | membrane (integrated input)."),
    percentile: float = typer.Option(99.99, "--percentile", help="Activation percentile that sets each layer's scale."),
    leak: float = typer.Option(0.0, "--leak", help="Membrane leak per timestep (0: integrate-and-fire)."),
    v_init: Optional[float] = typer.Option(None, "--v-init", help="Initial membrane as a fraction of the threshold (default: 0.5 for a QCFS-trained net, else 0)."),
    static_power_w: Optional[float] = typer.Option(None, "--static-power-w", help="Loihi static power per chip (default from the constants file: 0.029 W, Blouw et al. 2019)."),
    host_io_s: Optional[float] = typer.Option(None, "--host-io-s", help="Host I/O seconds per timestep (default 0)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="Seed of the Poisson encoding."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of named datasets."),
    details: bool = typer.Option(False, "--details", help="Add per-layer and per-core rows to the JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """SNN accuracy (simulated) and Loihi energy, latency, cores (modeled) on a dataset."""
    from edgefer.errors import EdgeferError
    from edgefer.snn.evaluate import SnnOptions, evaluate_snn

    if timesteps < 1:
        raise EdgeferError(f"--timesteps must be >= 1, got {timesteps}")
    if input_mode is not None and input_mode not in ("gray", "edges", "edges-x2"):
        raise EdgeferError(f"unknown --input {input_mode!r}; choose gray or edges")
    fer, dataset = _load(model, data, split, heldout, data_root)
    options = SnnOptions(timesteps, encoding, precision, readout, percentile, leak, v_init, batch_size=batch_size,
                         static_power_w=static_power_w, host_io_s_per_timestep=host_io_s, seed=seed)
    result = evaluate_snn(fer, dataset, options, input_mode, data_root=data_root, with_layers=details)
    result["model"] = model
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    print(f"{model} on {result['data']} ({result['input']}, T={timesteps}, {result['precision']}): "
          f"SNN accuracy {result['accuracy']:.4f} (CNN {result['cnn_accuracy']:.4f}) on n={result['n']}")
    print(f"modeled Loihi: {result['cores']} cores, {result['spikes_per_image']:.0f} spikes and "
          f"{result['synops_per_image']:.0f} synops per image, energy {result['energy_j'] * 1e3:.3f} mJ, "
          f"latency {result['latency_s'] * 1e3:.3f} ms, power {result['power_w']:.3f} W")


@snn_app.command("export-nir")
def export_nir_cmd(
    model: str = typer.Option(..., "--model", help="Shipped model name or checkpoint path."),
    out: Path = typer.Option(..., "--out", help="NIR file to write (HDF5)."),
    input_mode: Optional[str] = typer.Option(None, "--input", help="gray | edges (default: the model's own)."),
    precision: str = typer.Option("loihi", "--precision", help="loihi | float."),
    percentile: float = typer.Option(99.99, "--percentile"),
    calibration_data: Optional[str] = typer.Option(None, "--calibration-data", help="Images that set the thresholds "
                                                   "(default: the training split recorded in the model card)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
):
    """Convert a model and write its spiking network as a NIR graph."""
    from edgefer.nn.zoo import load_model
    from edgefer.snn.evaluate import build_snn
    from edgefer.snn.nir_export import export_nir

    fer = load_model(model)
    calibration = None
    if calibration_data is not None:
        from edgefer.data.loaders import load_dataset
        from edgefer.data.preprocess import prepare_input
        from edgefer.data.splits import evenly_spaced
        from edgefer.snn.options import SnnOptions

        images = load_dataset(calibration_data, None, data_root).images
        pick = evenly_spaced(len(images), SnnOptions.calibration_images)
        calibration = prepare_input(images[pick], input_mode or fer.input_mode)
    net = build_snn(fer, input_mode, precision, percentile, data_root=data_root, calibration=calibration)
    export_nir(net, out)
    print(f"wrote {out} ({len(net.layers)} spiking layers, {net.precision})")
