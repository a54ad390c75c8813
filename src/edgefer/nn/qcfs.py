"""The quantisation-clip-floor-shift activation (QCFS; Bu et al., ICLR 2022) for conversion-aware training.

``Qcfs`` with L levels and a trainable clip λ computes λ · clip(floor(x · L / λ + 1/2) / L, 0, 1): a
ReLU quantised to L + 1 levels and clipped at λ. An integrate-and-fire neuron with threshold λ, its
membrane started at λ/2 and reset by subtraction, fires exactly floor(x · L / λ + 1/2) spikes (at most
L) in L steps of a constant input x, so a network trained with it converts to spikes with little loss
at T ≈ L; ``edgefer.snn.convert`` reads λ as the layer's threshold.
"""

from __future__ import annotations

import torch
from torch import nn

# The clip's starting value: this percentile of the activation's input on the first training images
# (the converter's own percentile rule, so training starts from the thresholds a plain conversion uses).
INITIAL_PERCENTILE = 99.9
MIN_CLIP = 1e-3


class Qcfs(nn.Module):
    """``level_noise`` (training only, set by the trainer): the chance that an output moves one level up or
    down. A converted net at small T gets many activations one spike off (spikes arrive unevenly over the
    steps), and a net trained without that noise loses much of its accuracy to it."""

    def __init__(self, levels: int, clip: float = 1.0):
        super().__init__()
        self.levels = int(levels)
        self.clip = nn.Parameter(torch.tensor(float(clip)))
        self.level_noise = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.clip.clamp(min=MIN_CLIP)
        steps = x * (self.levels / clip) + 0.5
        # floor with a straight-through gradient: the forward pass quantises, the backward pass sees
        # the identity, so both x and the clip get the gradient of the clipped ReLU.
        quantised = steps + (torch.floor(steps) - steps).detach()
        if self.training and self.level_noise > 0:
            moved = torch.rand_like(x) < self.level_noise
            quantised = quantised + torch.where(torch.rand_like(x) < 0.5, -1.0, 1.0) * moved
        return (quantised / self.levels).clamp(0.0, 1.0) * clip

    def extra_repr(self) -> str:
        return f"levels={self.levels}, clip={float(self.clip):.4g}"


def qcfs_clip(activation: nn.Module | None) -> float | None:
    """A QCFS activation's clip (None for any other activation)."""
    return float(activation.clip.detach().clamp(min=MIN_CLIP)) if isinstance(activation, Qcfs) else None


def qcfs_layers(module: nn.Module) -> list[Qcfs]:
    return [m for m in module.modules() if isinstance(m, Qcfs)]


@torch.no_grad()
def init_clips(module: nn.Module, images: torch.Tensor, percentile: float = INITIAL_PERCENTILE) -> None:
    """Set every QCFS clip, in call order, to the ``percentile`` of its input on ``images``; each is set
    before the layers after it see its output."""
    def set_clip(layer: Qcfs, inputs):
        values = inputs[0].detach().float().clamp(min=0).reshape(-1)
        level = torch.quantile(values[:: max(1, values.numel() // 1_000_000)], percentile / 100)
        layer.clip.fill_(max(float(level), MIN_CLIP))

    hooks = [layer.register_forward_pre_hook(set_clip) for layer in qcfs_layers(module)]
    was_training = module.training
    module.eval()
    try:
        module(images)
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
