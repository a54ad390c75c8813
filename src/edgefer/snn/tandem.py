"""Spiking fine-tuning of a QCFS net: the float SNN it converts to runs forward, gradients flow through rates.

A QCFS net converts well at T >= 16, but at T = 8 spikes reach its deeper layers too unevenly, and a
net trained as a CNN never sees that. ``SpikingForward`` trains the converted network itself, in the
manner of tandem learning (Wu et al., IEEE TNNLS 2021, arXiv 1907.01167): each layer's forward value
is the spike rate its integrate-and-fire neurons really produce over T steps (threshold = the QCFS
clip, membrane started at half of it, reset by subtraction, exactly as ``edgefer.snn.convert`` maps the
net), and its backward pass is that of the clipped ReLU of the rates it received (straight-through).
The weights and clips trained this way are the CNN's own, so the checkpoint converts as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgefer.errors import EdgeferError
from edgefer.nn.qcfs import MIN_CLIP, Qcfs
from edgefer.snn.convert import QCFS_MEMBRANE_START, _layer_plan
from edgefer.snn.simulate import encode


def _integrate_and_fire(current: torch.Tensor) -> torch.Tensor:
    """Spikes (T x ...) of IF neurons with threshold 1 for per-step currents (T x ...). Torch operations, not
    neuron_scan's compiled kernel: training may run on a GPU (the tests check the spikes are simulate's)."""
    membrane = torch.full_like(current[0], QCFS_MEMBRANE_START)
    spikes = torch.empty_like(current)
    for step in range(current.shape[0]):
        membrane += current[step]
        spikes[step] = (membrane >= 1.0).float()
        membrane -= spikes[step]
    return spikes


class SpikingForward:
    """Called as ``spiking(x, timesteps)``: the CNN's logits as its converted float SNN computes them from spikes
    (the output layer's integrated current in the CNN's units), with gradients for every weight and clip."""

    def __init__(self, module: nn.Sequential, input_scale: float | None = None):
        """``input_scale``: for a net whose first layer runs on chip (no off-chip stem), the scale ``convert`` gives
        its pixel rates (``calibrated_input_scale`` of its calibration images); a stem's trained clip replaces it."""
        encoder, plan = _layer_plan(module, offchip_stem=True)
        if encoder and not isinstance(encoder[-1][1], Qcfs):
            raise EdgeferError("spiking fine-tuning needs the off-chip stem to end in a QCFS activation")
        if not encoder and (input_scale is None or input_scale <= 0):
            raise EdgeferError("spiking fine-tuning of a net without the off-chip stem needs the positive scale of "
                               "its pixel rates (input_scale)")
        for layer in plan:
            if any(isinstance(getattr(module, source), nn.BatchNorm2d) for source in layer.sources):
                raise EdgeferError(f"spiking fine-tuning cannot train layer {layer.name!r}: it has batch-norm")
            is_pool = isinstance(layer.module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))
            if layer is not plan[-1] and not is_pool and not isinstance(layer.activation, Qcfs):
                raise EdgeferError(f"spiking fine-tuning needs QCFS activations; layer {layer.name!r} has none")
        self.encoder = nn.Sequential(*[part for _, part in encoder])
        self.input_clip = encoder[-1][1] if encoder else None
        self.input_scale = input_scale
        self.plan = plan

    def __call__(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        scale = self.input_clip.clip.clamp(min=MIN_CLIP) if self.input_clip is not None else self.input_scale
        rates = self.encoder(x) / scale
        with torch.no_grad():
            spikes = encode(rates.clamp(0.0, 1.0), timesteps)
        rates = rates + (spikes.mean(0) - rates).detach()
        for layer in self.plan[:-1]:
            if isinstance(layer.module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                weight = bias = None  # a pool keeps its input's scale: threshold 1, weights 1/k^2
            else:
                next_scale = layer.activation.clip.clamp(min=MIN_CLIP)
                weight = layer.module.weight * (scale / next_scale)
                bias = None if layer.module.bias is None else layer.module.bias / next_scale
                scale = next_scale
            with torch.no_grad():
                current = _synapses(layer.module, spikes.flatten(0, 1), weight, bias)
                spikes = _integrate_and_fire(current.reshape(timesteps, x.shape[0], *current.shape[1:]))
            clipped = _synapses(layer.module, rates, weight, bias).clamp(0.0, 1.0)
            rates = clipped + (spikes.mean(0) - clipped).detach()
        output = self.plan[-1].module
        # The output neurons' integrated current per step, in the CNN's logit units.
        return _synapses(output, rates * scale, output.weight, output.bias)


def _synapses(module: nn.Module, inputs: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(module, nn.Conv2d):
        return F.conv2d(inputs, weight, bias, module.stride, module.padding, 1, module.groups)
    if isinstance(module, nn.Linear):
        return F.linear(inputs.flatten(1), weight, bias)
    return module(inputs)
