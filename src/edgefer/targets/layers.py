"""Every layer of a FerModel with its shapes, parameters and MACs: what the cost models walk."""

from __future__ import annotations

import torch
from torch import nn

KINDS = {nn.Conv2d: "conv", nn.Linear: "dense", nn.MaxPool2d: "pool", nn.AvgPool2d: "pool",
         nn.AdaptiveAvgPool2d: "pool", nn.BatchNorm2d: "bn", nn.ReLU: "act", nn.Flatten: "reshape",
         nn.Dropout: "dropout"}
# The ops each layer becomes in a TFLite / Edge TPU graph (batch-norm folds into the conv, ReLU fuses).
TFLITE_OPS = {"conv": "CONV_2D", "dense": "FULLY_CONNECTED", "reshape": "RESHAPE", "act": None, "bn": None,
              "dropout": None}


def _kind(module: nn.Module) -> str:
    for cls, kind in KINDS.items():
        if isinstance(module, cls):
            return kind
    return type(module).__name__.lower()


def tflite_op(module: nn.Module) -> str | None:
    kind = _kind(module)
    if isinstance(module, nn.MaxPool2d):
        return "MAX_POOL_2D"
    if isinstance(module, nn.AvgPool2d):
        return "AVERAGE_POOL_2D"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "MEAN"
    return TFLITE_OPS.get(kind, type(module).__name__)


def op_table(module: nn.Module, input_shape=(1, 48, 48)) -> list[dict]:
    """One row per leaf layer (batch 1): name, kind, tflite op, in/out values, params, MACs."""
    rows, hooks = [], []

    def record(name, mod):
        def hook(_, inputs, output):
            kind = _kind(mod)
            if kind == "conv":
                kh, kw = mod.kernel_size
                macs = output.numel() * (mod.in_channels // mod.groups) * kh * kw
            elif kind == "dense":
                macs = mod.in_features * mod.out_features
            else:
                macs = 0
            rows.append({"name": name, "kind": kind, "tflite_op": tflite_op(mod), "in_shape": list(inputs[0].shape[1:]),
                         "out_shape": list(output.shape[1:]), "in_values": int(inputs[0].numel()),
                         "out_values": int(output.numel()), "params": int(sum(p.numel() for p in mod.parameters())),
                         "macs": int(macs), "stride": getattr(mod, "stride", None), "dilation": getattr(mod, "dilation", None)})
        return hook

    for name, mod in module.named_modules():
        if name and not list(mod.children()):
            hooks.append(mod.register_forward_hook(record(name, mod)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            device = next(module.parameters()).device
            module(torch.zeros(1, *input_shape, device=device))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return rows
