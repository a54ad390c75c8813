"""The weights a net starts from when it is fine-tuned from a trained net of another form.

Three starts are allowed (``starting_state``):
- the same layers: the weights as they are;
- a ReLU net for its QCFS form (conversion-aware fine-tuning): the weights, the clips set afterwards;
- a batch-norm net for a bias-free form of the same layers (a Loihi-compatible net from an edge CNN):
  each batch-norm's scale folds into the convolution before it, the biases and batch-norm shifts are
  dropped (the target has nowhere to keep them), and max-pooling may become average pooling or a
  stride-2 last convolution per block (the feature maps keep their sizes). The start computes a
  different function, but its filters are the trained ones: distillation from the source net
  recovers in a few epochs what training from scratch needs tens for.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec


def fold_batchnorm(bn: torch.nn.BatchNorm2d, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight (and, when given, the bias) of a layer followed by ``bn`` with the batch-norm folded in."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    folded = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    if bias is None:
        return folded, None
    return folded, (bias - bn.running_mean.detach()) * scale + bn.bias.detach()


def _bias_free_form(source: ArchSpec, spec: ArchSpec) -> bool:
    """Whether ``spec`` is ``source``'s layers without batch-norm and bias (pooling and activation may differ)."""
    if spec.batchnorm or spec.bias or source.downsample not in ("maxpool", spec.downsample):
        return False
    return replace(source, batchnorm=False, bias=False, downsample=spec.downsample, activation=spec.activation,
                   levels=spec.levels, dropout=spec.dropout) == spec


def starting_state(init: FerModel, spec: ArchSpec) -> tuple[dict[str, torch.Tensor], bool]:
    """The state a net of ``spec`` starts from when fine-tuned from ``init``, and whether it fills the net
    exactly (strict loading); an error when ``init`` is none of the allowed starts."""
    source = init.spec
    state = init.module.state_dict()
    if source == spec:
        return state, True
    if replace(source, activation=spec.activation, levels=spec.levels) == spec:
        return state, False  # QCFS clips are initialised from the data
    if not _bias_free_form(source, spec):
        raise EdgeferError("the initial model's ArchSpec differs from the one to train (allowed: the same layers, "
                           "their QCFS form, or their bias-free form without batch-norm)")
    folded = {}
    for name, tensor in state.items():
        layer, _, kind = name.rpartition(".")
        if kind != "weight" or layer.startswith("bn"):
            continue  # biases, batch-norm shifts and statistics have no place in a bias-free net
        norm = getattr(init.module, layer.replace("conv", "bn", 1), None) if layer.startswith("conv") else None
        folded[name] = fold_batchnorm(norm, tensor)[0] if isinstance(norm, torch.nn.BatchNorm2d) else tensor
    return folded, spec.activation != "qcfs"
