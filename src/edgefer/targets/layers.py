"""Every layer of a FerModel with its shapes, parameters and MACs: what the cost models walk."""

from __future__ import annotations

import math

from torch import nn

from edgefer.nn.spec import layer_macs, trace_layers

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
    return [{"name": name, "kind": _kind(mod), "tflite_op": tflite_op(mod), "in_shape": in_shape, "out_shape": out_shape,
             "in_values": math.prod(in_shape), "out_values": math.prod(out_shape),
             "params": int(sum(p.numel() for p in mod.parameters())), "macs": layer_macs(mod, out_shape),
             "stride": getattr(mod, "stride", None), "dilation": getattr(mod, "dilation", None)}
            for name, mod, in_shape, out_shape in trace_layers(module, input_shape)]
