"""CNN -> rate-coded spiking network (Rueckauer et al. 2017 style conversion).

``convert`` walks a FerModel's flat ``nn.Sequential``: batch-norm is folded into the convolution
before it, a leading 1x1 ``stem`` convolution runs off-chip as the study's "to-spikes" layer, and
every other weight layer (and avg-pool) becomes a layer of integrate-and-fire neurons with reset by
subtraction. Weights and thresholds are normalised by a robust percentile of each layer's
activations on training images, so a neuron's firing rate approximates its ReLU activation.

``quantise_loihi`` maps a converted float network to Loihi 1's integer arithmetic: 8-bit signed
weight mantissas with one shared exponent per layer, integer thresholds and 24-bit state.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefer.errors import EdgeferError
from edgefer.nn.qcfs import Qcfs, qcfs_clip, qcfs_layers
from edgefer.nn.transfer import fold_batchnorm
from edgefer.snn.options import DEFAULT_PERCENTILE

UNSUPPORTED_ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.Softmax,
                           nn.Hardtanh, nn.ReLU6, nn.Softplus, nn.Mish, nn.SELU, nn.Hardswish)


@dataclass
class SpikingLayer:
    """One layer of IF neurons and the synapses that feed it.

    ``weight`` holds float weights (float mode) or integer weight mantissas (Loihi mode); the
    synaptic current is ``conv/linear(spikes, weight) * weight_scale + bias`` in membrane units.
    """

    name: str
    kind: str  # conv | dense
    weight: torch.Tensor
    bias: torch.Tensor | None
    threshold: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1
    weight_scale: float = 1.0
    weight_exponent: int | None = None  # Loihi mode: effective weight = mantissa * 2^(6 + exponent)
    source_layers: tuple[str, ...] = ()  # CNN layers folded into this one

    @property
    def neurons(self) -> int:
        return math.prod(self.output_shape)

    @property
    def fan_in(self) -> int:
        """Synapses per neuron (structural: every kernel position, zero weights included)."""
        return math.prod(self.weight.shape[1:])

    def current(self, spikes: torch.Tensor) -> torch.Tensor:
        """Synaptic input for a batch of input spike frames (N x input_shape) -> N x output_shape."""
        if self.kind == "conv":
            out = F.conv2d(spikes, self.weight, None, self.stride, self.padding, 1, self.groups)
        else:
            out = F.linear(spikes.reshape(spikes.shape[0], -1), self.weight)
        if self.weight_scale != 1.0:
            out.mul_(self.weight_scale)  # in place: out is a fresh tensor; a power of two, exact
        if self.bias is not None:
            out.add_(self.bias.view(1, -1, 1, 1) if self.kind == "conv" else self.bias)
        return out

    def fan_out_map(self) -> torch.Tensor:
        """Synapses leaving each input neuron (input_shape): exact at borders and strides."""
        return _fan_out_map(self.kind, tuple(self.weight.shape), tuple(self.input_shape), tuple(self.output_shape),
                            self.stride, self.padding, self.groups).clone()

    def received_map(self, input_counts: torch.Tensor) -> torch.Tensor:
        """Synaptic events each output neuron receives for input spike counts (input_shape): the all-ones
        convolution of the counts. Every output channel of a group sees the same window of that group's
        inputs, so the group's counts are summed over its channels and each window read off an integral
        image (exact for integer counts in float64)."""
        if self.kind == "conv":
            groups, k, stride, pad = self.groups, self.weight.shape[-1], self.stride, self.padding
            per_group = F.pad(input_counts.double().reshape(groups, -1, *input_counts.shape[1:]).sum(1), (pad,) * 4)
            integral = F.pad(per_group.cumsum(1).cumsum(2), (1, 0, 1, 0))
            rows = torch.arange(self.output_shape[1]) * stride
            cols = torch.arange(self.output_shape[2]) * stride
            window = (integral[:, rows + k][:, :, cols + k] - integral[:, rows][:, :, cols + k]
                      - integral[:, rows + k][:, :, cols] + integral[:, rows][:, :, cols])
            return window.repeat_interleave(self.weight.shape[0] // groups, dim=0).to(input_counts.dtype)
        return torch.full(self.output_shape, float(input_counts.sum()))

    def fan_in_map(self) -> torch.Tensor:
        """Synapses entering each output neuron that reach a real input (padding excluded)."""
        return self.received_map(torch.ones(self.input_shape))


@lru_cache(maxsize=256)
def _fan_out_map(kind: str, weight_shape: tuple, input_shape: tuple, output_shape: tuple, stride: int, padding: int,
                 groups: int) -> torch.Tensor:
    """A layer's fan-out map depends on its geometry only: computed once (the accounting of every
    simulated batch needs it)."""
    if kind == "conv":
        ones_out = torch.ones((1, *output_shape))
        k = weight_shape[-1]
        # conv_transpose restores (out-1)*s - 2p + k rows; output_padding adds the rows a strided
        # conv still reads; rows beyond those are never read (fan-out 0).
        missing = input_shape[1] - ((output_shape[1] - 1) * stride - 2 * padding + k)
        extra = max(0, min(missing, stride - 1))
        fan = F.conv_transpose2d(ones_out, torch.ones(weight_shape), None, stride, padding, extra, groups)[0]
        full = torch.zeros(input_shape)
        rows, cols = min(fan.shape[1], input_shape[1]), min(fan.shape[2], input_shape[2])
        full[:, :rows, :cols] = fan[:, :rows, :cols]
        return full.round()
    return torch.full(input_shape, float(weight_shape[0]))


@dataclass
class SpikingNet:
    """A converted network: an off-chip encoder to rates, then layers of IF neurons."""

    layers: list[SpikingLayer]
    input_shape: tuple[int, ...]  # shape of the rate-coded input (after the off-chip encoder)
    classes: tuple[str, ...]
    input_mode: str = "gray"
    encoder: nn.Module | None = None  # off-chip layers (the study's 1x1 "to-spikes" stem + ReLU)
    input_scale: float = 1.0  # rates = clip(encoder(x) / input_scale, 0, 1)
    precision: str = "float"  # float | loihi
    leak: float = 0.0  # fraction of the membrane lost per timestep (0: IF; Loihi mode: decay/4096)
    v_init: float = 0.0  # initial membrane as a fraction of the threshold
    state_bits: int | None = None  # Loihi mode: membrane and current saturate to this signed width
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def rates(self, inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Firing rates in [0, 1] of the input neurons for prepared images (N x 1 x 48 x 48)."""
        x = torch.as_tensor(inputs, dtype=torch.float32)
        if self.encoder is not None:
            x = self.encoder(x)
        return (x / self.input_scale).clamp(0.0, 1.0)

    @property
    def state_bounds(self) -> tuple[float, float] | None:
        if self.state_bits is None:
            return None
        return float(-(2 ** (self.state_bits - 1))), float(2 ** (self.state_bits - 1) - 1)

    @property
    def decay(self) -> int:
        """Loihi's 12-bit voltage decay for the leak (v -= trunc(v * decay / 4096))."""
        return int(round(self.leak * 4096))

    def summary(self) -> list[dict]:
        return [{"name": layer.name, "kind": layer.kind, "neurons": layer.neurons, "fan_in": layer.fan_in,
                 "threshold": layer.threshold, "weight_exponent": layer.weight_exponent,
                 "output_shape": list(layer.output_shape)} for layer in self.layers]


# --- conversion ------------------------------------------------------------------------------

# A QCFS net's neurons start at half the threshold: the shift its activation was trained with.
QCFS_MEMBRANE_START = 0.5


@dataclass
class _Pending:
    name: str
    module: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor
    relu: bool = False
    activation: nn.Module | None = None  # ReLU or QCFS: the CNN's own, so calibration sees its activations
    sources: list[str] = field(default_factory=list)

    @property
    def clip(self) -> float | None:
        """A QCFS activation's trained clip: the layer's scale (its IF threshold), no percentile needed."""
        return qcfs_clip(self.activation)


def _layer_plan(module: nn.Sequential, offchip_stem: bool) -> tuple[list[tuple[str, nn.Module]], list[_Pending]]:
    """Split the CNN into off-chip encoder modules and on-chip weight layers (BN folded)."""
    children = list(module.named_children())
    encoder: list[tuple[str, nn.Module]] = []
    start = 0
    if offchip_stem and children and children[0][0] == "stem":
        encoder.append(children[0])
        start = 1
        if len(children) > 1 and isinstance(children[1][1], (nn.ReLU, Qcfs)):
            encoder.append(children[1])
            start = 2
    layers: list[_Pending] = []
    for name, child in children[start:]:
        last = layers[-1] if layers else None
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            if last is not None and not last.relu and not isinstance(last.module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                raise EdgeferError(f"layer {last.name!r} has no ReLU after it: a spiking neuron only represents "
                                   "non-negative activations")
            if isinstance(child, nn.Conv2d) and (child.dilation != (1, 1) or child.padding_mode != "zeros"
                                                 or child.stride[0] != child.stride[1]):
                raise EdgeferError(f"layer {name!r} (Conv2d with dilation, non-zero padding mode or unequal "
                                   "strides) cannot be converted")
            weight = child.weight.detach().float().clone()
            bias = child.bias.detach().float().clone() if child.bias is not None else torch.zeros(weight.shape[0])
            layers.append(_Pending(name, child, weight, bias, sources=[name]))
        elif isinstance(child, nn.BatchNorm2d):
            if last is None or not isinstance(last.module, nn.Conv2d) or last.relu or len(last.sources) > 1:
                raise EdgeferError(f"batch-norm layer {name!r} does not directly follow a convolution and cannot be "
                                   "folded into one")
            last.weight, last.bias = fold_batchnorm(child, last.weight, last.bias)
            last.sources.append(name)
        elif isinstance(child, (nn.ReLU, Qcfs)):
            if last is None or last.relu:
                raise EdgeferError(f"ReLU {name!r} does not follow a weight layer and cannot be converted")
            last.relu = True
            last.activation = child
            last.sources.append(name)
        elif isinstance(child, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            if last is not None and not last.relu:
                raise EdgeferError(f"pooling layer {name!r} follows {last.name!r} without a ReLU")
            # Averages of QCFS outputs stay within the clip: the pool keeps the scale of its input.
            clip = last.activation if last is not None and isinstance(last.activation, Qcfs) else None
            layers.append(_Pending(name, child, torch.empty(0), torch.empty(0), relu=True, activation=clip,
                                   sources=[name]))
        elif isinstance(child, nn.MaxPool2d):
            raise EdgeferError(f"layer {name!r} (MaxPool2d) cannot be converted: max-pooling has no rate-coded "
                               "spiking equivalent; use avgpool or stride2 downsampling")
        elif isinstance(child, UNSUPPORTED_ACTIVATIONS):
            raise EdgeferError(f"layer {name!r} ({type(child).__name__}) is an unsupported activation: only ReLU "
                               "converts to integrate-and-fire neurons")
        elif isinstance(child, (nn.Flatten, nn.Dropout, nn.Identity)):
            continue  # flatten is implicit in dense layers; dropout is the identity at inference
        else:
            raise EdgeferError(f"layer {name!r} ({type(child).__name__}) cannot be converted to a spiking layer")
    if not layers:
        raise EdgeferError("the model has no weight layers to convert")
    for pending in layers[:-1]:
        if not pending.relu:
            raise EdgeferError(f"layer {pending.name!r} has no ReLU after it: a spiking neuron only represents "
                               "non-negative activations")
    return encoder, layers


def _pool_weight(module: nn.Module, channels: int, in_hw: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """An avg-pool as a grouped convolution: (weight, stride, padding)."""
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size if isinstance(module.output_size, int) else module.output_size[0]
        if size not in (1, None) and size != 1:
            raise EdgeferError("only global adaptive average pooling (output size 1) can be converted")
        kh, kw = in_hw
        if kh != kw:
            raise EdgeferError("global average pooling of a non-square map cannot be converted")
        return torch.full((channels, 1, kh, kw), 1.0 / (kh * kw)), kh, 0
    k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
    stride = module.stride if isinstance(module.stride, int) else module.stride[0]
    padding = module.padding if isinstance(module.padding, int) else module.padding[0]
    if padding and module.count_include_pad is False:
        raise EdgeferError("avg-pool with padding that excludes the pad from the count cannot be converted")
    return torch.full((channels, 1, k, k), 1.0 / (k * k)), stride, padding


def _percentile(values: torch.Tensor, percentile: float, max_samples: int = 4_000_000) -> float:
    flat = values.reshape(-1)
    if flat.numel() > max_samples:  # a fixed-stride subsample keeps the quantile cheap and deterministic
        flat = flat[:: math.ceil(flat.numel() / max_samples)]
    return float(np.percentile(flat.numpy(), percentile))


def calibrated_input_scale(encoded: torch.Tensor, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The scale of the input rates (rates = input / scale) of a net whose encoder has no trained clip: the
    ``percentile`` of its calibration inputs, as encoded for the chip."""
    return _percentile(encoded.clamp(min=0), percentile) or 1.0


@torch.no_grad()
def convert(model, calibration: np.ndarray | torch.Tensor, percentile: float = DEFAULT_PERCENTILE, offchip_stem: bool = True,
            leak: float = 0.0, v_init: float | None = None, input_mode: str | None = None) -> SpikingNet:
    """Convert a trained FerModel into a float-precision SpikingNet.

    ``calibration``: prepared training inputs (N x 1 x 48 x 48) whose activations set each layer's
    scale (the ``percentile`` of its ReLU outputs, or a QCFS activation's trained clip): weights become
    W * scale_in / scale_out and every threshold is 1, so rates approximate normalised activations
    clipped at 1. ``v_init`` (the initial membrane over the threshold) defaults to 1/2 for a QCFS-trained
    net (the shift its activation was trained with) and 0 otherwise.
    """
    if not 0 < percentile <= 100:
        raise EdgeferError(f"percentile must be in (0, 100], got {percentile}")
    if not 0 <= leak < 1:
        raise EdgeferError(f"leak must be in [0, 1), got {leak}")
    module = model.module
    module.eval()
    if v_init is None:
        v_init = QCFS_MEMBRANE_START if qcfs_layers(module) else 0.0
    encoder_parts, plan = _layer_plan(module, offchip_stem)
    encoder = nn.Sequential(*[copy.deepcopy(m) for _, m in encoder_parts]).eval() if encoder_parts else None
    x = torch.as_tensor(calibration, dtype=torch.float32)
    if x.shape[0] == 0:
        raise EdgeferError("no calibration images")
    if encoder is not None:
        x = encoder(x)
    stem_clip = qcfs_clip(encoder_parts[-1][1]) if encoder_parts else None
    rate_scale = stem_clip or calibrated_input_scale(x, percentile)
    previous_scale = rate_scale
    layers: list[SpikingLayer] = []
    scales = {"input": rate_scale}
    for index, pending in enumerate(plan):
        in_shape = tuple(x.shape[1:])
        if isinstance(pending.module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            if len(in_shape) != 3:
                raise EdgeferError(f"pooling layer {pending.name!r} needs a 2-D feature map")
            weight, stride, padding = _pool_weight(pending.module, in_shape[0], in_shape[1:])
            kind, groups, bias = "conv", in_shape[0], torch.zeros(in_shape[0])
        elif isinstance(pending.module, nn.Conv2d):
            conv = pending.module
            weight, stride, padding, groups, kind, bias = pending.weight, conv.stride[0], conv.padding[0], conv.groups, "conv", pending.bias
            if isinstance(padding, str):
                raise EdgeferError(f"layer {pending.name!r}: string padding {padding!r} cannot be converted")
        else:
            weight, stride, padding, groups, kind, bias = pending.weight, 1, 0, 1, "dense", pending.bias
        if kind == "conv":
            activation = F.conv2d(x, weight, bias, stride, padding, 1, groups)
        else:
            activation = F.linear(x.reshape(x.shape[0], -1), weight, bias)
        is_output = index == len(plan) - 1
        if isinstance(pending.module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or pending.activation is None:
            rectified = activation.clamp(min=0)
        else:
            rectified = pending.activation(activation)
        scale = pending.clip or _percentile(rectified, percentile)
        if scale <= 0:  # a dead (or all-negative output) layer: keep its weights as they are
            scale = float(rectified.max()) or 1.0
        scales[pending.name] = scale
        norm_weight = weight * (previous_scale / scale)
        norm_bias = bias / scale
        has_bias = bool(norm_bias.abs().max() > 0) if norm_bias.numel() else False
        layers.append(SpikingLayer(pending.name, kind, norm_weight.contiguous(), norm_bias if has_bias else None, 1.0,
                                   in_shape, tuple(activation.shape[1:]), stride, padding, groups,
                                   source_layers=tuple(pending.sources)))
        x = activation if is_output else rectified
        previous_scale = scale
    return SpikingNet(layers, tuple(_encoded_shape(encoder, model)), tuple(model.classes), input_mode or model.input_mode,
                      encoder, rate_scale, "float", leak, v_init, None,
                      {"percentile": percentile, "scales": scales, "calibration_images": int(len(calibration)),
                       "offchip": [name for name, _ in encoder_parts]})


def _encoded_shape(encoder: nn.Module | None, model) -> tuple[int, ...]:
    spec = model.spec
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    if encoder is None:
        return shape
    with torch.no_grad():
        return tuple(encoder(torch.zeros(1, *shape)).shape[1:])


# --- Loihi quantisation ----------------------------------------------------------------------

def quantise_loihi(net: SpikingNet, weight_bits: int = 8, headroom_bits: int = 3, chip=None) -> SpikingNet:
    """Loihi-mode copy of a float SpikingNet: integer weights, thresholds and 24-bit state.

    Per layer the weights become ``weight_bits``-bit signed mantissas m (full range) sharing one
    exponent e; the effective weight is m * 2^(6+e) and the threshold vth_mant * 2^6, both in
    integer membrane units. e is the largest exponent that keeps vth_mant within its 17 bits and
    the threshold ``headroom_bits`` below the 24-bit membrane limit (room for overshoot).
    """
    from edgefer.snn.chip import default_chip

    if net.precision != "float":
        raise EdgeferError("quantise_loihi expects a float-precision SpikingNet")
    chip = chip or default_chip()
    max_bits = chip.value("limits", "weight_bits_max")
    if not 2 <= weight_bits <= max_bits:
        raise EdgeferError(f"Loihi weights have 1-{max_bits} bits; got {weight_bits}")
    state_bits = chip.value("limits", "membrane_bits")
    shift = chip.value("limits", "threshold_shift")
    vth_max = 2 ** chip.value("limits", "threshold_mantissa_bits") - 1
    e_min, e_max = chip.value("limits", "weight_exponent_range")
    threshold_limit = 2 ** (state_bits - 1 - headroom_bits)
    mantissa_max = 2 ** (weight_bits - 1) - 1
    layers = []
    for layer in net.layers:
        peak = float(layer.weight.abs().max())
        if peak == 0:
            raise EdgeferError(f"layer {layer.name!r} has only zero weights")
        alpha = mantissa_max / peak  # mantissa units per unit of normalised weight
        exponent = None
        for e in range(e_max, e_min - 1, -1):
            vth_mant = round(alpha * 2.0 ** e)
            if 1 <= vth_mant <= vth_max and vth_mant * 2 ** shift <= threshold_limit:
                exponent = e
                break
        if exponent is None:
            raise EdgeferError(f"layer {layer.name!r}: no Loihi weight exponent fits its weight range")
        mantissa = torch.round(layer.weight * alpha).clamp(-mantissa_max - 1, mantissa_max)
        weight_scale = float(2 ** (shift + exponent))
        threshold = float(round(alpha * 2.0 ** exponent) * 2 ** shift)
        bias = None
        if layer.bias is not None:
            limit = 2 ** (state_bits - 1) - 1
            bias = torch.round(layer.bias * threshold).clamp(-limit - 1, limit)
        layers.append(SpikingLayer(layer.name, layer.kind, mantissa.contiguous(), bias, threshold, layer.input_shape,
                                   layer.output_shape, layer.stride, layer.padding, layer.groups, weight_scale, exponent,
                                   layer.source_layers))
    info = dict(net.info, weight_bits=weight_bits, state_bits=state_bits)
    return SpikingNet(layers, net.input_shape, net.classes, net.input_mode, net.encoder, net.input_scale, "loihi",
                      net.leak, net.v_init, state_bits, info)
