"""Accuracy and modeled Loihi cost of a converted model on a dataset (``edgefer snn eval``)."""

from __future__ import annotations

import numpy as np
import torch

from edgefer.data.dataset import FaceDataset
from edgefer.data.preprocess import input_sparsity, prepare_input
from edgefer.errors import EdgeferError
from edgefer.snn.convert import DEFAULT_PERCENTILE, SpikingNet, calibration_inputs, convert, loihi_constants, quantise_loihi
from edgefer.snn.loihi import cost, partition
from edgefer.snn.simulate import ENCODINGS, READOUTS, LayerStats, SimResult, simulate

PRECISIONS = ("loihi", "float")


def build_snn(model, input_mode: str | None = None, precision: str = "loihi", percentile: float = DEFAULT_PERCENTILE,
              leak: float = 0.0, v_init: float = 0.0, calibration_images: int = 256, data_root=None,
              calibration: np.ndarray | None = None) -> SpikingNet:
    """Convert a FerModel (thresholds from its own training images) and quantise it for Loihi."""
    if precision not in PRECISIONS:
        raise EdgeferError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    mode = input_mode or model.input_mode
    source = "given"
    if calibration is None:
        calibration, source = calibration_inputs(model, mode, calibration_images, data_root)
    net = convert(model, calibration, percentile, leak=leak, v_init=v_init, input_mode=mode)
    net.info["calibration"] = source
    return quantise_loihi(net) if precision == "loihi" else net


def merge_results(parts: list[SimResult]) -> SimResult:
    """One SimResult for batches simulated one after another."""
    first = parts[0]
    merged = SimResult(torch.cat([p.counts for p in parts]), torch.cat([p.membrane for p in parts]),
                       torch.cat([p.integrated for p in parts]), first.timesteps)
    if first.layers:
        weights = np.array([len(p.counts) for p in parts], dtype=float)
        merged.layers = [LayerStats(stats.name, stats.neurons,
                                    torch.cat([p.layers[i].input_spikes for p in parts]),
                                    torch.cat([p.layers[i].synops for p in parts]),
                                    torch.cat([p.layers[i].spikes for p in parts]),
                                    torch.cat([p.layers[i].active_updates for p in parts]),
                                    stats.neuron_updates,
                                    sum(p.layers[i].received_events for p in parts),
                                    sum(p.layers[i].spike_counts for p in parts))
                         for i, stats in enumerate(first.layers)]
        merged.input_spikes = merged.layers[0].input_spikes
        merged.input_zero_rate_fraction = float(np.average([p.input_zero_rate_fraction for p in parts], weights=weights))
        merged.input_spike_sparsity = float(np.average([p.input_spike_sparsity for p in parts], weights=weights))
    return merged


def run_snn(net: SpikingNet, inputs: np.ndarray, timesteps: int, encoding: str = "rate", seed: int = 0,
            batch_size: int = 64, record: bool = True, histories: list | None = None) -> SimResult:
    """Simulate prepared inputs in batches (Poisson draws are seeded per batch); ``histories``
    receives each batch's per-step output history (see ``simulate``)."""
    if encoding not in ENCODINGS:
        raise EdgeferError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    if len(inputs) == 0:
        raise EdgeferError("no images to simulate")
    parts = []
    for start in range(0, len(inputs), batch_size):
        rates = net.rates(inputs[start : start + batch_size])
        history = [] if histories is not None else None
        parts.append(simulate(net, rates, timesteps, encoding, seed + start, record, history=history))
        if histories is not None:
            histories.append(history)
    return merge_results(parts)


def evaluate_snn(model, dataset: FaceDataset, timesteps: int = 50, input_mode: str | None = None,
                 encoding: str = "rate", precision: str = "loihi", readout: str = "spikes", percentile: float = DEFAULT_PERCENTILE,
                 leak: float = 0.0, v_init: float = 0.0, calibration_images: int = 256, batch_size: int = 64,
                 static_power_w: float | None = None, host_io_s_per_timestep: float | None = None, seed: int = 0,
                 data_root=None, net: SpikingNet | None = None, with_layers: bool = True,
                 accuracy_curve: bool = False) -> dict:
    """SNN accuracy (simulated) and Loihi cost per image (modeled) next to the CNN's accuracy;
    ``accuracy_curve`` adds the accuracy after every timestep 1..T of the same run."""
    from edgefer.nn.evaluate import model_labels

    if readout not in READOUTS:
        raise EdgeferError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
    mode = input_mode or model.input_mode
    labels = model_labels(model, dataset)
    inputs = prepare_input(dataset.images, mode)
    if net is None:
        try:
            net = build_snn(model, mode, precision, percentile, leak, v_init, calibration_images, data_root)
        except EdgeferError as exc:
            if "card does not record" not in str(exc):
                raise
            # No training data on record: calibrate on the evaluated images and say so in the result.
            pick = np.linspace(0, len(inputs) - 1, min(calibration_images, len(inputs))).round().astype(int)
            net = build_snn(model, mode, precision, percentile, leak, v_init, data_root=data_root,
                            calibration=inputs[pick])
            net.info["calibration"] = f"evaluated images ({len(pick)}; the model card records no training data)"
    histories = [] if accuracy_curve else None
    sim = run_snn(net, inputs, timesteps, encoding, seed, batch_size, histories=histories)
    predicted = sim.predictions(readout)
    cnn_predicted = model.logits(inputs).argmax(axis=1)
    cores = partition(net)
    loihi, core_rows = cost(net, sim, cores, static_power_w, host_io_s_per_timestep)
    layer_rows = [stats.per_image(timesteps) for stats in sim.layers]
    spikes = sum(row["spikes"] for row in layer_rows)
    result = {
        "model": getattr(model, "info", {}).get("name") or "model",
        "data": dataset.source,
        "input": mode,
        "timesteps": timesteps,
        "encoding": encoding,
        "precision": precision if net.precision == precision else net.precision,
        "readout": readout,
        "accuracy": float(np.mean(predicted == labels)),
        "n": int(len(labels)),
        "cnn_accuracy": float(np.mean(cnn_predicted == labels)),
        "agreement_with_cnn": float(np.mean(predicted == cnn_predicted)),
        "accuracy_source": "simulated",
        "spikes_per_image": spikes,
        "input_spikes_per_image": float(sim.input_spikes.double().mean()),
        "synops_per_image": sum(row["synops"] for row in layer_rows),
        "neuron_updates_per_image": sum(row["neuron_updates"] for row in layer_rows),
        "active_neuron_updates_per_image": sum(row["active_updates"] for row in layer_rows),
        "energy_j": loihi.energy_j,
        "latency_s": loihi.latency_s,
        "power_w": loihi.power_w,
        "fps": 1.0 / loihi.latency_s,
        "cores": loihi.cores,
        "chips": loihi.chips,
        "tiles": loihi.tiles,
        "dynamic_energy_j": loihi.dynamic_energy_j,
        "static_energy_j": loihi.static_energy_j,
        "energy_breakdown_j": loihi.energy_breakdown_j,
        "timestep_s": loihi.timestep_s,
        "static_power_w": loihi.static_power_w,
        "host_io_s_per_timestep": loihi.host_io_s_per_timestep,
        "source": "modeled",
        "input_sparsity": input_sparsity(inputs),
        "input_zero_rate_fraction": sim.input_zero_rate_fraction,
        "input_spike_sparsity": sim.input_spike_sparsity,
        "core_load": {key: {"max": max(r[key] for r in core_rows), "mean": float(np.mean([r[key] for r in core_rows]))}
                      for key in ("neurons", "synapses", "input_axons", "output_axons", "synops_per_image", "step_time_s")},
        "calibration": net.info.get("calibration"),
        "percentile": net.info.get("percentile"),
        "constants": loihi_constants()["_about"],
    }
    if histories is not None:
        correct = np.zeros(timesteps)
        start = 0
        for history in histories:
            size = len(history[0][0])
            for t, (counts, membrane, integrated) in enumerate(history):
                step = SimResult(counts, membrane, integrated, t + 1).predictions(readout)
                correct[t] += np.sum(step == labels[start : start + size])
            start += size
        result["accuracy_by_timestep"] = (correct / len(labels)).tolist()
    if with_layers:
        result["layers"] = layer_rows
        result["per_core"] = core_rows
    return result
