"""Accuracy and modeled Loihi cost of a converted model on a dataset (``edgefer snn eval``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from edgefer.data.dataset import FaceDataset, Validation
from edgefer.data.preprocess import input_sparsity, prepare_input
from edgefer.data.splits import evenly_spaced
from edgefer.errors import EdgeferError, UnrecordedDataError
from edgefer.nn.recipes import calibration_inputs
from edgefer.snn.chip import Chip, default_chip
from edgefer.snn.convert import SpikingNet, convert, quantise_loihi
from edgefer.snn.loihi import LoihiCost, cost, partition
from edgefer.snn import STUDY_TIMESTEPS
from edgefer.snn.options import DEFAULT_PERCENTILE, ENCODINGS, PRECISIONS, SnnOptions
from edgefer.snn.simulate import LayerStats, SimResult, simulate

MAX_SPIKE_BYTES = 4 * 2 ** 30  # memory one simulated batch's input spikes may take


def build_snn(model, input_mode: str | None = None, precision: str = "loihi", percentile: float = DEFAULT_PERCENTILE,
              leak: float = 0.0, v_init: float | None = None, calibration_images: int = 256, data_root=None,
              calibration: np.ndarray | None = None, chip: Chip | None = None) -> SpikingNet:
    """Convert a FerModel (thresholds from its own training images) and quantise it for the chip."""
    if precision not in PRECISIONS:
        raise EdgeferError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    mode = input_mode or model.input_mode
    source = "given"
    if calibration is None:
        recorded = calibration_inputs(model, calibration_images, mode, data_root)
        calibration, source = recorded.inputs, recorded.description
    net = convert(model, calibration, percentile, leak=leak, v_init=v_init, input_mode=mode)
    net.info["calibration"] = source
    return quantise_loihi(net, chip=chip) if precision == "loihi" else net


def _build_for(model, inputs: np.ndarray, mode: str, options: SnnOptions, data_root, chip) -> SpikingNet:
    """The network ``evaluate_snn`` simulates: calibrated on the model's training split, or, when its card
    records none, on the evaluated images (and the result says so)."""
    build = dict(precision=options.precision, percentile=options.percentile, leak=options.leak, v_init=options.v_init,
                 data_root=data_root, chip=chip)
    try:
        return build_snn(model, mode, calibration_images=options.calibration_images, **build)
    except UnrecordedDataError:
        pick = evenly_spaced(len(inputs), options.calibration_images)
        net = build_snn(model, mode, calibration=inputs[pick], **build)
        net.info["calibration"] = f"evaluated images ({len(pick)}; the model card records no training data)"
        return net


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
    if timesteps < 1 or batch_size < 1:
        raise EdgeferError(f"timesteps and batch size must be at least 1, got {timesteps} and {batch_size}")
    # The input spike trains of one batch are held whole (float32 plus a uint8 copy in Loihi mode).
    spike_bytes = timesteps * min(batch_size, len(inputs)) * math.prod(net.input_shape) * 5
    if spike_bytes > MAX_SPIKE_BYTES:
        raise EdgeferError(f"T={timesteps} at batch size {batch_size} needs {spike_bytes / 2 ** 30:.1f} GiB for the input "
                           f"spikes, over the {MAX_SPIKE_BYTES / 2 ** 30:.0f} GiB limit: lower --timesteps or --batch-size")
    parts = []
    for start in range(0, len(inputs), batch_size):
        rates = net.rates(inputs[start : start + batch_size])
        history = [] if histories is not None else None
        parts.append(simulate(net, rates, timesteps, encoding, seed + start, record, history=history))
        if histories is not None:
            histories.append(history)
    return merge_results(parts)


def readout_scores(sim: SimResult, net: SpikingNet, readout: str = "spikes", output_scale: float = 1.0) -> np.ndarray:
    """Per-class scores whose argmax is the readout's class: the input each output neuron integrated per
    step over its threshold, which estimates the output layer's activation (the CNN's logit over
    ``output_scale``, that layer's conversion scale), negative logits included. Where the spike readout's
    class is not the top of those (a near tie in counts), it is lifted half a spike above the best other.
    Times ``output_scale``, their softmax is a confidence on the CNN's footing, not a softmax of spike
    counts, which saturates as the counts grow with T."""
    scores = sim.integrated.double().numpy() / net.layers[-1].threshold
    if readout == "spikes":
        rows, winners = np.arange(len(scores)), sim.predictions(readout)
        others = scores.copy()
        others[rows, winners] = -np.inf
        scores[rows, winners] = np.maximum(scores[rows, winners], others.max(1) + 0.5)
    return scores * (output_scale / sim.timesteps)


@dataclass
class ChipRun:
    """One simulation of a network on a chip with the chip's cost accounting."""

    sim: SimResult
    cost: LoihiCost
    core_rows: list[dict]
    layer_rows: list[dict]

    def activity(self) -> dict:
        rows = self.layer_rows
        return {"spikes_per_image": sum(r["spikes"] for r in rows),
                "input_spikes_per_image": float(self.sim.input_spikes.double().mean()),
                "synops_per_image": sum(r["synops"] for r in rows),
                "neuron_updates_per_image": sum(r["neuron_updates"] for r in rows),
                "active_neuron_updates_per_image": sum(r["active_updates"] for r in rows)}

    def cost_fields(self) -> dict:
        c = self.cost
        return {"energy_j": c.energy_j, "latency_s": c.latency_s, "power_w": c.power_w, "fps": 1.0 / c.latency_s,
                "cores": c.cores, "chips": c.chips, "tiles": c.tiles, "dynamic_energy_j": c.dynamic_energy_j,
                "static_energy_j": c.static_energy_j, "energy_breakdown_j": c.energy_breakdown_j,
                "timestep_s": c.timestep_s, "static_power_w": c.static_power_w,
                "host_io_s_per_timestep": c.host_io_s_per_timestep, "source": "modeled"}

    def core_load(self) -> dict:
        rows = self.core_rows
        return {key: {"max": max(r[key] for r in rows), "mean": float(np.mean([r[key] for r in rows]))}
                for key in ("neurons", "synapses", "input_axons", "output_axons", "synops_per_image", "step_time_s")}


def run_on_chip(net: SpikingNet, inputs: np.ndarray, options: SnnOptions, chip: Chip | None = None,
                histories: list | None = None) -> ChipRun:
    """Simulate prepared inputs with accounting and price the recorded activity on the chip."""
    chip = chip or default_chip()
    sim = run_snn(net, inputs, options.timesteps, options.encoding, options.seed, options.batch_size, histories=histories)
    loihi, core_rows = cost(net, sim, partition(net, chip), options.static_power_w, options.host_io_s_per_timestep, chip)
    return ChipRun(sim, loihi, core_rows, [stats.per_image(options.timesteps) for stats in sim.layers])


def _accuracy_by_timestep(histories: list, labels: np.ndarray, timesteps: int, readout: str) -> list[float]:
    correct = np.zeros(timesteps)
    start = 0
    for history in histories:
        size = len(history[0][0])
        for t, (counts, membrane, integrated) in enumerate(history):
            step = SimResult(counts, membrane, integrated, t + 1).predictions(readout)
            correct[t] += np.sum(step == labels[start : start + size])
        start += size
    return (correct / len(labels)).tolist()


# A Loihi net runs for the fewest timesteps that convert well: the smallest T whose SNN accuracy is within this
# many points of its accuracy at the study's T=50, on the model's validation split (labelled images it never
# trained on, never the test set). Latency and most of the energy grow with T.
TIMESTEP_TOLERANCE_POINTS = 1.0
SWEEP_TIMESTEPS = (4, 8, 16, 32, 50)


def timestep_sweep(net: SpikingNet, validation: Validation, options: SnnOptions, chip: Chip | None = None,
                   sweep: tuple[int, ...] = SWEEP_TIMESTEPS, reference_timesteps: int = STUDY_TIMESTEPS,
                   tolerance_points: float = TIMESTEP_TOLERANCE_POINTS, cost_images: int = 32) -> dict:
    """Accuracy on the validation images after every T up to the longest run, the modeled cost at each T
    of ``sweep`` (and the chosen one) on ``cost_images`` of them, and the T chosen by the tolerance rule."""
    chip = chip or default_chip()
    inputs = validation.inputs
    longest = max(*sweep, reference_timesteps)
    histories: list = []  # one run's output after every step: the accuracy at every shorter T too
    run_snn(net, inputs, longest, options.encoding, options.seed, options.batch_size, record=False, histories=histories)
    curve = _accuracy_by_timestep(histories, validation.labels, longest, options.readout)
    bar = curve[reference_timesteps - 1] - tolerance_points / 100
    chosen = next(t for t in range(1, longest + 1) if curve[t - 1] >= bar - 1e-12)
    # Cost per image is an average: a few of the images price each T (the accounting is the slow part).
    priced = inputs[evenly_spaced(len(inputs), cost_images)]
    points = []
    for steps in sorted(set(sweep) | {chosen, reference_timesteps}):
        run = run_on_chip(net, priced, replace(options, timesteps=steps), chip)
        points.append({"timesteps": steps, "accuracy": curve[steps - 1], "energy_j": run.cost.energy_j,
                       "dynamic_energy_j": run.cost.dynamic_energy_j, "latency_s": run.cost.latency_s,
                       "spikes_per_image": run.activity()["spikes_per_image"]})
    return {"timesteps": chosen, "reference_timesteps": reference_timesteps, "tolerance_points": tolerance_points,
            "accuracy_at_reference": curve[reference_timesteps - 1], "accuracy_at_chosen": curve[chosen - 1],
            "accuracy_by_timestep": curve, "points": points, "images": validation.description,
            "cost_images": int(len(priced))}


def evaluate_snn(model, dataset: FaceDataset, options: SnnOptions | None = None, input_mode: str | None = None,
                 net: SpikingNet | None = None, chip: Chip | None = None, data_root=None, with_layers: bool = True,
                 accuracy_curve: bool = False) -> dict:
    """SNN accuracy (simulated) and the chip's cost per image (modeled) next to the CNN's accuracy;
    ``accuracy_curve`` adds the accuracy after every timestep 1..T of the same run."""
    from edgefer.nn.evaluate import model_labels

    options = options or SnnOptions()
    chip = chip or default_chip()
    mode = input_mode or model.input_mode
    labels = model_labels(model, dataset)
    inputs = prepare_input(dataset.images, mode)
    net = net if net is not None else _build_for(model, inputs, mode, options, data_root, chip)
    histories = [] if accuracy_curve else None
    run = run_on_chip(net, inputs, options, chip, histories)
    predicted = run.sim.predictions(options.readout)
    cnn_predicted = model.logits(inputs).argmax(axis=1)
    result = {
        "model": getattr(model, "info", {}).get("name") or "model",
        "data": dataset.source,
        "input": mode,
        "timesteps": options.timesteps,
        "encoding": options.encoding,
        "precision": options.precision if net.precision == options.precision else net.precision,
        "readout": options.readout,
        "accuracy": float(np.mean(predicted == labels)),
        "n": int(len(labels)),
        "cnn_accuracy": float(np.mean(cnn_predicted == labels)),
        "agreement_with_cnn": float(np.mean(predicted == cnn_predicted)),
        "accuracy_source": "simulated",
        **run.activity(),
        **run.cost_fields(),
        "input_sparsity": input_sparsity(inputs),
        "input_zero_rate_fraction": run.sim.input_zero_rate_fraction,
        "input_spike_sparsity": run.sim.input_spike_sparsity,
        "core_load": run.core_load(),
        "calibration": net.info.get("calibration"),
        "percentile": net.info.get("percentile"),
        "constants": chip.about,
    }
    if histories is not None:
        result["accuracy_by_timestep"] = _accuracy_by_timestep(histories, labels, options.timesteps, options.readout)
    if with_layers:
        result["layers"] = run.layer_rows
        result["per_core"] = run.core_rows
    return result
