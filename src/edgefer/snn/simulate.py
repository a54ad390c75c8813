"""Simulation of a SpikingNet: time-batched and vectorised, plus a per-timestep reference loop.

``simulate`` computes a layer's synaptic input for a whole chunk of timesteps with one
convolution (time folded into the batch), then scans its neurons over those timesteps (compiled,
``edgefer.snn.neuron_scan``; torch operations where a leak or float64 state needs them); a batch of
images runs at once. ``simulate_reference`` is the straightforward loop (every timestep through
every layer). Both apply the same integer or float operations in the same order, so they give
exactly the same spikes (tests check it). In Loihi mode all state is integer-valued: currents are
exact integers in float32 (|mantissa sum| < 2^24) and the scan saturates to the 24-bit state; there
``simulate`` computes the currents with int8 convolutions (exact, so equal to the reference's float
ones) and keeps convolutional state channels last.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from edgefer.errors import EdgeferError
from edgefer.snn.options import ENCODINGS, READOUTS
from edgefer.snn.convert import SpikingLayer, SpikingNet
from edgefer.snn.neuron_scan import binary_spikes, integrate_and_fire



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


def _initial_membrane(net: SpikingNet, layer: SpikingLayer, shape, dtype,
                      memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    start = net.v_init * layer.threshold
    if net.precision == "loihi":
        start = float(round(start))
    membrane = torch.full(shape, start, dtype=dtype)
    return membrane.contiguous(memory_format=memory_format) if membrane.dim() == 4 else membrane


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


class _FloatSynapses:
    """A layer's synaptic current from its float conv/linear (``SpikingLayer.current``)."""

    def __init__(self, layer: SpikingLayer):
        self.layer = layer
        self.memory_format = torch.contiguous_format

    def current(self, spikes: torch.Tensor, buffers: "_Buffers") -> torch.Tensor:
        steps, batch = spikes.shape[:2]
        flat = spikes.reshape(steps * batch, *self.layer.input_shape)
        return self.layer.current(flat).reshape(steps, batch, *self.layer.output_shape)


class _Int8Synapses:
    """Loihi mode: a layer's synaptic current from int8 arithmetic on the CPU's dot-product units.

    Spikes are 0/1 and weights 8-bit mantissas, so the int32 sums are exact, as are the reference's
    float32 sums (they stay below 2^24), and so is the power-of-two weight scale: both give the same
    current. Convolutions run as oneDNN int8 convolutions (uint8 spikes, channels-last frames, the
    scale applied on the way out to float32); dense layers as one int8 matrix product.
    """

    def __init__(self, layer: SpikingLayer, packed: torch.Tensor):
        self.layer = layer
        out_channels = layer.weight.shape[0]
        if layer.kind == "conv":
            self.memory_format = torch.channels_last
            self.scales = torch.full((out_channels,), layer.weight_scale)
            self.zero_points = torch.zeros(out_channels, dtype=torch.int64)
            self.packed = packed
        else:
            self.memory_format = torch.contiguous_format
            self.matrix = packed

    @staticmethod
    def pack(layer: SpikingLayer) -> torch.Tensor:
        """Convolutions: oneDNN's prepacked int8 weight; dense layers: the in x out int8 matrix."""
        out_channels = layer.weight.shape[0]
        weight = layer.weight.to(torch.int8)
        if layer.kind == "conv":
            return torch.ops.onednn.qconv_prepack(weight, torch.ones(out_channels), 1.0, 0, *_geometry(layer))
        if len(layer.input_shape) == 3:  # read channels-last frames as they lie: H x W x C order
            weight = weight.reshape(-1, *layer.input_shape).permute(0, 2, 3, 1).reshape(out_channels, -1)
        return weight.t().contiguous()

    @staticmethod
    def applies(layer: SpikingLayer) -> bool:
        weight = layer.weight
        integer = bool((weight == weight.round()).all()) and float(weight.min()) >= -128 and float(weight.max()) <= 127
        power_of_two = math.frexp(layer.weight_scale)[0] == 0.5
        # The reference's float32 sums are exact only below 2^24: there both sides agree for certain.
        small = float(weight.abs().reshape(weight.shape[0], -1).sum(1).max()) < 2 ** 24
        return integer and power_of_two and small

    def current(self, spikes: torch.Tensor, buffers: "_Buffers") -> torch.Tensor:
        """Current (float32, membrane units) for 0/1 spikes steps x batch x input_shape."""
        steps, batch = spikes.shape[:2]
        frames = spikes.reshape(steps * batch, *self.layer.input_shape)
        if self.layer.kind == "conv":
            stride, padding, dilation, groups = _geometry(self.layer)
            # 0/1 spikes: a bool cast viewed as uint8 is the same bytes, 2-3x faster than a uint8 cast;
            # the compiled scan's spikes are uint8 already.
            spikes_u8 = frames if frames.dtype == torch.uint8 else frames.bool().view(torch.uint8)
            spikes_u8 = spikes_u8.contiguous(memory_format=torch.channels_last)
            current = torch.ops.onednn.qconv2d_pointwise(
                spikes_u8, 1.0, 0, self.packed, self.scales,
                self.zero_points, None, stride, padding, dilation, groups, 1.0, 0, torch.float32, "none", [], "")
        else:
            if frames.dim() == 4:
                frames = frames.permute(0, 2, 3, 1)  # a view for channels-last frames
            columns = buffers.get("columns", (frames.shape[0], self.matrix.shape[0]), torch.int8)
            columns.copy_(frames.reshape(frames.shape[0], -1))
            sums = buffers.get("sums", (frames.shape[0], self.matrix.shape[1]), torch.int32)
            torch._int_mm(columns, self.matrix, out=sums)
            current = buffers.get("current", sums.shape, torch.float32)
            torch.mul(sums, self.layer.weight_scale, out=current)
        if self.layer.bias is not None:
            current.add_(self.layer.bias.view(-1, *[1] * (current.dim() - 2)))
        return current.view(steps, batch, *self.layer.output_shape)


class _Buffers:
    """Work tensors kept across chunks: fresh large allocations are page-faulted in every time."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        tensor = self.tensors.get(name)
        if tensor is None or tensor.shape != torch.Size(shape) or tensor.dtype != dtype:
            tensor = self.tensors[name] = torch.empty(shape, dtype=dtype)
        return tensor

    def like(self, name: str, template: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A buffer of the template's shape and memory layout."""
        tensor = self.tensors.get(name)
        if tensor is None or tensor.shape != template.shape or tensor.stride() != template.stride() or tensor.dtype != dtype:
            tensor = self.tensors[name] = torch.empty_like(template, dtype=dtype)
        return tensor


def _current_limit(layer: SpikingLayer, spike_size: float) -> float:
    """Largest |synaptic current| a layer can receive from spikes of at most ``spike_size``."""
    bias = 0.0 if layer.bias is None else float(layer.bias.abs().max())
    return _weight_facts(layer).largest_input * spike_size + bias


def _memory_order(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """steps x batch x output_shape as steps x batch x neurons in memory order: a view, and reductions
    over it run at memory speed (a channels-last 5-D reduction is several times slower)."""
    if memory_format == torch.channels_last:
        x = x.movedim(2, -1)
    return x.flatten(2)


def _logical(per_neuron: torch.Tensor, shape: tuple, memory_format: torch.memory_format) -> torch.Tensor:
    """batch x neurons in memory order back to batch x shape."""
    if memory_format == torch.channels_last:
        return per_neuron.view(per_neuron.shape[0], *shape[1:], shape[0]).movedim(-1, 1)
    return per_neuron.view(per_neuron.shape[0], *shape)


def _geometry(layer: SpikingLayer) -> tuple:
    """Stride, padding, dilation and groups in oneDNN's argument form."""
    return [layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups


@dataclass(frozen=True)
class _WeightFacts:
    packed_int8: torch.Tensor | None  # the int8 weight as the synapses use it; None where int8 is not exact
    largest_input: float  # largest |weighted sum| one neuron can receive from 0/1 spikes


# By id of a live weight tensor (the entry goes with the tensor): what the facts depend on, and the
# facts. Packing a convolution takes milliseconds, as much as simulating one image, so it is done
# once per weight.
_WEIGHTS: dict[int, tuple] = {}


def _weight_facts(layer: SpikingLayer) -> _WeightFacts:
    signature = (layer.weight._version, layer.kind, layer.input_shape, layer.stride, layer.padding, layer.groups,
                 layer.weight_scale)
    key = id(layer.weight)
    if key not in _WEIGHTS:
        weakref.finalize(layer.weight, _WEIGHTS.pop, key, None)
    elif _WEIGHTS[key][0] == signature:
        return _WEIGHTS[key][1]
    largest = float(layer.weight.abs().reshape(layer.weight.shape[0], -1).sum(1).max()) * layer.weight_scale
    packed = _Int8Synapses.pack(layer) if _Int8Synapses.applies(layer) else None
    _WEIGHTS[key] = (signature, _WeightFacts(packed, largest))
    return _WEIGHTS[key][1]


def _synapses(net: SpikingNet, binary_input: bool) -> list:
    """int8 arithmetic where it is exact (Loihi mode, 0/1 input spikes), else the float conv/linear."""
    if net.precision == "loihi" and binary_input:
        packed = [_weight_facts(layer).packed_int8 for layer in net.layers]
        if all(weight is not None for weight in packed):
            return [_Int8Synapses(layer, weight) for layer, weight in zip(net.layers, packed)]
    return [_FloatSynapses(layer) for layer in net.layers]


def _torch_scan(net: SpikingNet, layer: SpikingLayer, syn, current: torch.Tensor, v: torch.Tensor, buffers: _Buffers,
                active: torch.Tensor | None, output_membranes: list | None) -> torch.Tensor:
    """The scan as torch operations, for what the compiled one does not cover (a leak, float64
    state, the output membrane after every step): ``v`` is updated in place, spikes are returned;
    with ``active`` (accounting), each image's active updates are added there."""
    dtype, bounds, threshold = v.dtype, net.state_bounds, layer.threshold
    record = active is not None
    out = buffers.like("spikes", current, torch.float32)
    if record and not net.leak:
        # Without a leak a neuron's state changes only when input arrives: active = input != 0.
        active += _memory_order(current, syn.memory_format).bool().sum(2, dtype=torch.int32).sum(0)
    for t in range(current.shape[0]):
        if record and net.leak:  # with a leak, a non-zero membrane decays: that update is active too
            active += ((current[t] != 0) | (v != 0)).reshape(v.shape[0], -1).sum(1)
        if net.leak:
            v.copy_(_leak(net, v))
        v += current[t]
        if bounds is not None:
            v.clamp_(*bounds)
        fired = out[t]
        torch.ge(v, threshold, out=fired)
        v.sub_(fired.to(dtype), alpha=threshold) if dtype != torch.float32 else v.sub_(fired, alpha=threshold)
        if output_membranes is not None:
            output_membranes.append(v.double().clone())
    return out


class _Accounting:
    """Observer of a run that keeps what the cost model needs: per image, neuron updates with input and
    every neuron's spike count (memory order); the rest follows from the counts at the end."""

    def __init__(self, net: SpikingNet, batch: int):
        self.active = [torch.zeros(batch, dtype=torch.int64) for _ in net.layers]
        self.spike_maps = [torch.zeros(batch, layer.neurons, dtype=torch.int32) for layer in net.layers]

    def add_spikes(self, index: int, out: torch.Tensor, memory_format) -> None:
        self.spike_maps[index] += _memory_order(out, memory_format).sum(0, dtype=torch.int32)

    def finish(self, result: SimResult, net: SpikingNet, synapses: list, rates: torch.Tensor, encoded: torch.Tensor,
               timesteps: int) -> None:
        in_counts = encoded.sum(0).double()
        for layer, syn, updates, spike_map in zip(net.layers, synapses, self.active, self.spike_maps):
            out_counts = _logical(spike_map.double(), layer.output_shape, syn.memory_format).contiguous()
            result.layers.append(_layer_stats(layer, in_counts, out_counts, updates, timesteps))
            in_counts = out_counts
        result.input_spikes = result.layers[0].input_spikes
        result.input_zero_rate_fraction = float((rates == 0).double().mean())
        result.input_spike_sparsity = 1.0 - float(result.input_spikes.sum()) / encoded.numel()


class _OutputReadout:
    """Observer of the output layer: spike counts and integrated input, step by step in the reference
    loop's order (bit-identical sums), and with ``history`` the readout after every step."""

    def __init__(self, shape: tuple, history: list | None):
        self.integrated = torch.zeros(shape, dtype=torch.float64)
        self.counts = torch.zeros_like(self.integrated)
        self.history = history
        self.membranes: list[torch.Tensor] | None = [] if history is not None else None

    def add(self, current: torch.Tensor, out: torch.Tensor) -> None:
        for t in range(current.shape[0]):
            self.integrated += current[t].double()
            if self.history is not None:
                self.counts += out[t].double()
                self.history.append((self.counts.clone(), self.membranes[len(self.history)], self.integrated.clone()))
        if self.history is None:
            self.counts += out.sum(0).double()


@torch.no_grad()
def simulate(net: SpikingNet, rates: torch.Tensor, timesteps: int, encoding: str = "rate", seed: int = 0,
             record: bool = True, chunk_elements: int = 6_000_000, spikes_in: torch.Tensor | None = None,
             trains: list | None = None, history: list | None = None) -> SimResult:
    """Run a batch of images (rates N x input_shape) for ``timesteps`` steps, time-batched.

    Timesteps are processed in chunks (as many as fit ``chunk_elements`` floats of the widest
    layer; kept under glibc's 32 MB mmap ceiling, buffers are reused instead of page-faulted anew):
    within a chunk each layer gets its synaptic input for all chunk steps in one call, then its
    neurons are scanned step by step. In Loihi mode the synaptic sums are int8 convolutions
    and matrix products (exact, see ``_Int8Synapses``). ``record`` adds per-layer accounting; a ``trains`` list
    receives every layer's spike trains (T x N x output_shape), for checking; a ``history`` list
    receives the output layer's (counts, membrane, integrated input) after every step, from which
    the prediction at any shorter T can be read (the encodings are causal: step t does not depend
    on T).
    """
    _check_inputs(net, rates)
    batch = rates.shape[0]
    encoded = spikes_in if spikes_in is not None else encode(rates, timesteps, encoding, seed)
    # int8 synapses (Loihi mode) read 0/1 input spikes as uint8; other input takes the float ones.
    input_uint8 = binary_spikes(encoded) if net.precision == "loihi" else None
    binary_input = input_uint8 is not None
    synapses = _synapses(net, binary_input)
    frames_in = input_uint8 if isinstance(synapses[0], _Int8Synapses) else encoded
    dtype = _scan_dtype(net)
    widest = max([math.prod(net.input_shape)] + [layer.neurons for layer in net.layers])
    chunk = max(1, min(timesteps, chunk_elements // max(1, batch * widest)))
    bounds = net.state_bounds
    # In Loihi mode the membrane is clamped to the state width every step, as in the reference; the
    # current only where the layer's largest possible current exceeds it (else a no-op).
    clamp_current = [] if bounds is None else [
        _current_limit(layer, 1.0 if index or binary_input else float(encoded.abs().max())) > bounds[1]
        for index, layer in enumerate(net.layers)]
    buffers = [_Buffers() for _ in net.layers]
    membranes = [_initial_membrane(net, layer, (batch, *layer.output_shape), dtype, syn.memory_format)
                 for layer, syn in zip(net.layers, synapses)]
    last = len(net.layers) - 1
    readout = _OutputReadout((batch, *net.layers[-1].output_shape), history)
    accounting = _Accounting(net, batch) if record else None
    chunks: list[list[torch.Tensor]] = [[] for _ in net.layers]
    for start in range(0, timesteps, chunk):
        stop = min(timesteps, start + chunk)
        frames = frames_in[start:stop]
        for index, (layer, syn) in enumerate(zip(net.layers, synapses)):
            current = syn.current(frames, buffers[index])
            v = membranes[index]
            threshold = layer.threshold
            compiled = dtype == torch.float32 and not net.leak and not (history is not None and index == last)
            clamp_input = bounds is not None and clamp_current[index]
            if clamp_input and (not compiled or index == last):  # the output layer integrates the clamped current
                current, clamp_input = current.clamp(*bounds), False
            current = current.to(dtype)
            if compiled:
                # The compiled scan (same float32 operations, same spikes); int8 synapses read its uint8 spikes.
                int8_next = index < last and isinstance(synapses[index + 1], _Int8Synapses) and trains is None
                out = buffers[index].like("spikes", current, torch.uint8 if int8_next else torch.float32)
                order = syn.memory_format
                active_inputs = integrate_and_fire(
                    _memory_order(current, order), _memory_order(v.unsqueeze(0), order)[0], _memory_order(out, order),
                    threshold, bounds, accounting.spike_maps[index] if accounting else None, clamp_input)
                if accounting:
                    accounting.active[index] += active_inputs
            else:
                out = _torch_scan(net, layer, syn, current, v, buffers[index],
                                  accounting.active[index] if accounting else None,
                                  readout.membranes if index == last else None)
                if accounting:
                    accounting.add_spikes(index, out, syn.memory_format)
            if index == last:
                readout.add(current, out)
            if trains is not None:
                chunks[index].append(out.clone())
            frames = out
    result = SimResult(readout.counts, membranes[-1].double(), readout.integrated, timesteps)
    if trains is not None:
        trains.extend(torch.cat(parts).contiguous() for parts in chunks)
    if accounting:
        accounting.finish(result, net, synapses, rates, encoded, timesteps)
    return result


def _layer_stats(layer: SpikingLayer, in_counts: torch.Tensor, out_counts: torch.Tensor, active: torch.Tensor,
                 timesteps: int) -> LayerStats:
    """A layer's activity from each image's input and output spike counts over the whole run
    (batch x input_shape, batch x output_shape): synops = input spikes x their fan-out."""
    batch = in_counts.shape[0]
    synops = (in_counts * layer.fan_out_map().double()).reshape(batch, -1).sum(1)
    return LayerStats(layer.name, layer.neurons, in_counts.reshape(batch, -1).sum(1), synops,
                      out_counts.reshape(batch, -1).sum(1), active, layer.neurons * timesteps,
                      layer.received_map(in_counts.sum(0).float()).double(), out_counts.sum(0))


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
