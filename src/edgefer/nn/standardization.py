"""Scaled weight standardisation (Qiao et al. 2019; Brock et al., ICLR 2021, "NF-Nets"): a training-time
reparameterisation that gives a net without batch-norm what batch-norm gives its training.

Each output unit's weights are used as ``gain * (w - mean(w)) / (std(w) * sqrt(fan_in))``: zero-mean weights
of unit norm, times a trained gain. Pre-activations keep about the same scale from layer to layer however
the raw weights drift, without per-neuron bias currents (which batch-norm folds into, and which keep
every Loihi neuron updating at every timestep). After training the reparameterised weights are written back
as plain weights: the saved net is an ordinary bias-free CNN that exports and converts like any other.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

# ReLU(z), z ~ N(0, 1), has variance (1 - 1/pi) / 2. Zero-mean weights pass on only the variance of their
# inputs, so a new standardised layer fed by ReLUs gets a gain of 1 / sqrt of it to keep unit variance.
RELU_GAIN = 1 / math.sqrt((1 - 1 / math.pi) / 2)
_EPS = 1e-8


def _centred_norm(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each output unit's weights minus their mean, and the norm of that (std x sqrt(fan_in))."""
    centred = weight - weight.mean(tuple(range(1, weight.dim())), keepdim=True)
    norm = centred.square().sum(tuple(range(1, weight.dim())), keepdim=True).clamp(min=_EPS).sqrt()
    return centred, norm


class ScaledStandardization(nn.Module):
    """The parametrisation of one layer's weight (out x in x k x k or out x in). The gains start at
    ``RELU_GAIN`` in a new net; in a trained one (``keep``) at the norms of the layer's own centred weights, so
    it starts as it was, less each unit's mean weight."""

    def __init__(self, weight: torch.Tensor, keep: bool):
        super().__init__()
        norm = _centred_norm(weight.detach())[1]
        self.gain = nn.Parameter(norm.clone() if keep else torch.full_like(norm, RELU_GAIN))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        centred, norm = _centred_norm(weight)
        return self.gain * centred / norm


def standardized_layers(module: nn.Module) -> list[nn.Module]:
    """The convolutions and dense layers that can be standardised: a fan-in of one (the 1x1 stem on a gray
    image) has no mean to remove, so it stays as it is."""
    return [layer for layer in module.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))
            and math.prod(layer.weight.shape[1:]) > 1]


def standardize_weights(module: nn.Module, trained: bool) -> None:
    """Reparameterise every layer of ``standardized_layers`` in place (the gains become parameters); a
    ``trained`` net keeps what its layers compute, up to their mean weights."""
    for layer in standardized_layers(module):
        parametrize.register_parametrization(layer, "weight", ScaledStandardization(layer.weight, keep=trained))


def materialize_weights(module: nn.Module) -> None:
    """Write the standardised weights back as plain weights and drop the reparameterisation."""
    for layer in module.modules():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
