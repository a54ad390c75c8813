"""Simulation of a SpikingNet: time-batched and vectorised, plus a per-timestep reference loop.

``simulate`` computes a layer's synaptic input for a whole chunk of timesteps with one
convolution (time folded into the batch), then scans its neurons over those timesteps; a batch of
images runs at once. ``simulate_reference`` is the straightforward loop (every timestep through
every layer). Both apply the same integer or float operations in the same order, so they give
exactly the same spikes (tests check it). In Loihi mode all state is integer-valued: currents are
exact integers in float32 (|mantissa sum| < 2^24) and the scan saturates to the 24-bit state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edgefer.errors import EdgeferError
from edgefer.snn.convert import SpikingLayer, SpikingNet

ENCODINGS = ("rate", "poisson")
READOUTS = ("spikes", "membrane")


def encode(rates: torch.Tensor, timesteps: int, encoding: str = "rate", seed: int = 0) -> torch.Tensor:
    """Input spike trains T x N x shape from rates in [0, 1] (computed off-chip, as in the study).

    ``rate``: deterministic, spike k of a neuron with rate r at the step where round(t * r) grows
    (about r * T evenly spaced spikes); ``poisson``: an independent Bernoulli(r) draw per step.
    """
    if timesteps < 1:
        raise EdgeferError(f"timesteps must be >= 1, got {timesteps}")
    if encoding == "rate":
        steps = torch.arange(timesteps + 1, dtype=torch.float64).view(-1, *([1] * rates.dim()))
        cumulative = torch.floor(steps * rates.double() + 0.5)
        return (cumulative[1:] - cumulative[:-1]).float()
    if encoding == "poisson":
        generator = torch.Generator().manual_seed(seed)
        draws = torch.rand((timesteps, *rates.shape), generator=generator)
        return (draws < rates.unsqueeze(0)).float()
    raise EdgeferError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


@dataclass
class LayerStats:
    """Per-layer activity of a simulated batch (per-image vectors, per-neuron totals)."""

    name: str
    neurons: int
    input_spikes: torch.Tensor  # per image: spikes arriving at this layer's synapses
    synops: torch.Tensor  # per image: input spikes x their fan-out
    spikes: torch.Tensor  # per image: spikes this layer emits
    active_updates: torch.Tensor  # per image: neuron updates with input or non-zero membrane
    neuron_updates: int  # per image: neurons x timesteps (every compartment is updated each step)
    received_events: torch.Tensor  # output_shape, summed over the batch: synaptic events per neuron
    spike_counts: torch.Tensor  # output_shape, summed over the batch: spikes per neuron

    def per_image(self, timesteps: int) -> dict:
        spikes = float(self.spikes.double().mean())
        return {"layer": self.name, "neurons": self.neurons, "input_spikes": float(self.input_spikes.double().mean()),
                "synops": float(self.synops.double().mean()), "spikes": spikes,
                "neuron_updates": self.neuron_updates, "active_updates": float(self.active_updates.double().mean()),
                "firing_rate": spikes / (self.neurons * timesteps)}


@dataclass
class SimResult:
    counts: torch.Tensor  # N x classes: output spike counts
    membrane: torch.Tensor  # N x classes: final output membrane
    integrated: torch.Tensor  # N x classes: total synaptic input the output neurons integrated
    timesteps: int
    layers: list[LayerStats] = field(default_factory=list)
    input_spikes: torch.Tensor | None = None  # per image, encoded input spikes
    input_zero_rate_fraction: float | None = None  # input neurons with rate 0 (sparsity of the encoding)
    input_spike_sparsity: float | None = None  # fraction of (neuron, step) slots without a spike

    def predictions(self, readout: str = "spikes") -> np.ndarray:
        """Class per image: most output spikes (ties broken by membrane), or most integrated input."""
        if readout == "membrane":
            return self.integrated.argmax(1).numpy()
        if readout != "spikes":
            raise EdgeferError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
        top = self.counts.max(1, keepdim=True).values
        tied = torch.where(self.counts == top, self.membrane.double(), torch.tensor(-float("inf"), dtype=torch.float64))
        return tied.argmax(1).numpy()


def _scan_dtype(net: SpikingNet) -> torch.dtype:
    # Loihi's leak multiplies the 24-bit membrane by a 12-bit decay: exact only in float64.
    return torch.float64 if (net.precision == "loihi" and net.decay) else torch.float32


def _initial_membrane(net: SpikingNet, layer: SpikingLayer, shape, dtype) -> torch.Tensor:
    start = net.v_init * layer.threshold
    if net.precision == "loihi":
        start = float(round(start))
    return torch.full(shape, start, dtype=dtype)


def _leak(net: SpikingNet, v: torch.Tensor) -> torch.Tensor:
    if net.precision == "loihi":
        return v - torch.trunc(v * net.decay / 4096)
    return v * (1.0 - net.leak)


def _clamp_current(net: SpikingNet, current: torch.Tensor) -> torch.Tensor:
    bounds = net.state_bounds
    return current if bounds is None else current.clamp(*bounds)


def _check_inputs(net: SpikingNet, rates: torch.Tensor) -> None:
    if tuple(rates.shape[1:]) != tuple(net.input_shape):
        raise EdgeferError(f"input rates of shape {tuple(rates.shape[1:])}, the network expects {tuple(net.input_shape)}")


@torch.no_grad()
def simulate(net: SpikingNet, rates: torch.Tensor, timesteps: int, encoding: str = "rate", seed: int = 0,
             record: bool = True, chunk_elements: int = 6_000_000, spikes_in: torch.Tensor | None = None,
             trains: list | None = None, history: list | None = None) -> SimResult:
    """Run a batch of images (rates N x input_shape) for ``timesteps`` steps, time-batched.

    Timesteps are processed in chunks (as many as fit ``chunk_elements`` floats of the widest
    layer; kept under glibc's 32 MB mmap ceiling, buffers are reused instead of page-faulted anew): within a chunk each layer gets its synaptic input for all chunk steps in one call, then
    its neurons are scanned step by step. ``record`` adds per-layer accounting; a ``trains`` list
    receives every layer's spike trains (T x N x output_shape), for checking; a ``history`` list
    receives the output layer's (counts, membrane, integrated input) after every step, from which
    the prediction at any shorter T can be read (the encodings are causal: step t does not depend
    on T).
    """
    _check_inputs(net, rates)
    batch = rates.shape[0]
    encoded = spikes_in if spikes_in is not None else encode(rates, timesteps, encoding, seed)
    dtype = _scan_dtype(net)
    widest = max([int(np.prod(net.input_shape))] + [layer.neurons for layer in net.layers])
    chunk = max(1, min(timesteps, chunk_elements // max(1, batch * widest)))
    bounds = net.state_bounds
    membranes = [_initial_membrane(net, layer, (batch, *layer.output_shape), dtype) for layer in net.layers]
    integrated = torch.zeros((batch, *net.layers[-1].output_shape), dtype=torch.float64)
    counts = torch.zeros_like(integrated)
    stats = _empty_stats(net, batch) if record else None
    chunks: list[list[torch.Tensor]] = [[] for _ in net.layers]
    output_membranes: list[torch.Tensor] = []
    for start in range(0, timesteps, chunk):
        stop = min(timesteps, start + chunk)
        steps = stop - start
        frames = encoded[start:stop]
        for index, layer in enumerate(net.layers):
            flat = frames.reshape(steps * batch, *frames.shape[2:])
            current = layer.current(flat).reshape(steps, batch, *layer.output_shape)
            v = membranes[index]
            saturating = False
            if bounds is not None:
                # Saturation can only occur if |v| plus the chunk's summed |input| reaches the state
                # limit; otherwise both clamps are no-ops and are skipped (1 % margin for rounding).
                reach = float(v.abs().max()) + float(current.abs().sum(0).max())
                saturating = reach >= 0.99 * bounds[1]
                if saturating:
                    current = current.clamp(*bounds)
            current = current.to(dtype)
            out = torch.empty(current.shape, dtype=torch.float32)
            threshold = layer.threshold
            per_step_activity = record and bool(net.leak)
            if record and not net.leak:
                # Without a leak a neuron's state changes only when input arrives: active = input != 0.
                stats["active"][index] += (current != 0).reshape(steps, batch, -1).sum((0, 2))
            for t in range(steps):
                if per_step_activity:  # with a leak, a non-zero membrane decays: that update is active too
                    stats["active"][index] += ((current[t] != 0) | (v != 0)).reshape(batch, -1).sum(1)
                if net.leak:
                    v = _leak(net, v)
                v += current[t]
                if saturating:
                    v.clamp_(*bounds)
                fired = out[t]
                torch.ge(v, threshold, out=fired)
                v.sub_(fired.to(dtype), alpha=threshold) if dtype != torch.float32 else v.sub_(fired, alpha=threshold)
                if history is not None and index == len(net.layers) - 1:
                    output_membranes.append(v.double().clone())
            membranes[index] = v
            if index == len(net.layers) - 1:
                for t in range(steps):  # step by step, in the reference loop's order (bit-identical sums)
                    integrated += current[t].double()
                    if history is not None:
                        counts += out[t].double()
                        history.append((counts.clone(), output_membranes[len(history)], integrated.clone()))
                if history is None:
                    counts += out.sum(0).double()
            if record:
                _account(stats, index, layer, frames, out)
            if trains is not None:
                chunks[index].append(out)
            frames = out
    result = SimResult(counts, membranes[-1].double(), integrated, timesteps)
    if trains is not None:
        trains.extend(torch.cat(parts) for parts in chunks)
    if record:
        result.layers = [LayerStats(layer.name, layer.neurons, stats["in"][i], stats["synops"][i], stats["out"][i],
                                    stats["active"][i], layer.neurons * timesteps, stats["received"][i], stats["counts"][i])
                         for i, layer in enumerate(net.layers)]
        result.input_spikes = stats["in"][0]
        result.input_zero_rate_fraction = float((rates == 0).double().mean())
        result.input_spike_sparsity = 1.0 - float(encoded.double().mean())
    return result


def _empty_stats(net: SpikingNet, batch: int) -> dict:
    n = len(net.layers)
    return {"in": [torch.zeros(batch, dtype=torch.float64) for _ in range(n)],
            "synops": [torch.zeros(batch, dtype=torch.float64) for _ in range(n)],
            "out": [torch.zeros(batch, dtype=torch.float64) for _ in range(n)],
            "active": [torch.zeros(batch, dtype=torch.int64) for _ in range(n)],
            "received": [torch.zeros(layer.output_shape, dtype=torch.float64) for layer in net.layers],
            "counts": [torch.zeros(layer.output_shape, dtype=torch.float64) for layer in net.layers],
            "fan_out": [layer.fan_out_map().double() for layer in net.layers]}


def _account(stats: dict, index: int, layer: SpikingLayer, frames: torch.Tensor, out: torch.Tensor) -> None:
    """Spikes in and out, synops (= input spikes x fan-out) and events per neuron, for one chunk."""
    batch = frames.shape[1]
    in_counts = frames.sum(0).double()  # batch x input_shape
    stats["in"][index] += in_counts.reshape(batch, -1).sum(1)
    stats["synops"][index] += (in_counts * stats["fan_out"][index]).reshape(batch, -1).sum(1)
    out_counts = out.sum(0).double()
    stats["out"][index] += out_counts.reshape(batch, -1).sum(1)
    stats["counts"][index] += out_counts.sum(0)
    stats["received"][index] += layer.received_map(in_counts.sum(0).float()).double()


@torch.no_grad()
def simulate_reference(net: SpikingNet, rates: torch.Tensor, timesteps: int, encoding: str = "rate", seed: int = 0,
                       spikes_in: torch.Tensor | None = None) -> tuple[SimResult, list[torch.Tensor]]:
    """The plain loop: for every timestep, every layer computes its input and updates its neurons.

    Returns the result and every layer's spike trains (T x N x output_shape), for checking."""
    _check_inputs(net, rates)
    batch = rates.shape[0]
    encoded = spikes_in if spikes_in is not None else encode(rates, timesteps, encoding, seed)
    dtype = _scan_dtype(net)
    bounds = net.state_bounds
    membranes = [_initial_membrane(net, layer, (batch, *layer.output_shape), dtype) for layer in net.layers]
    trains = [torch.zeros((timesteps, batch, *layer.output_shape)) for layer in net.layers]
    integrated = torch.zeros((batch, *net.layers[-1].output_shape), dtype=torch.float64)
    for t in range(timesteps):
        x = encoded[t]
        for index, layer in enumerate(net.layers):
            current = _clamp_current(net, layer.current(x)).to(dtype)
            v = membranes[index]
            if net.leak:
                v = _leak(net, v)
            v = v + current
            if bounds is not None:
                v = v.clamp(*bounds)
            fired = v >= layer.threshold
            v = torch.where(fired, v - layer.threshold, v)
            membranes[index] = v
            trains[index][t] = fired.float()
            if index == len(net.layers) - 1:
                integrated += current.double()
            x = fired.float()
    counts = trains[-1].sum(0).double()
    return SimResult(counts, membranes[-1].double(), integrated, timesteps), trains
