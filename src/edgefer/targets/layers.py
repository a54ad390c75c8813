"""Every layer of a FerModel with its shapes, parameters and MACs: what the cost models walk."""

from __future__ import annotations

import math

from edgefer.nn.spec import layer_macs, trace_layers

# Layer kinds by torch class name (torch loads only when a network is walked).
KINDS = {"Conv2d": "conv", "Linear": "dense", "MaxPool2d": "pool", "AvgPool2d": "pool", "AdaptiveAvgPool2d": "pool",
         "BatchNorm2d": "bn", "ReLU": "act", "Flatten": "reshape", "Dropout": "dropout"}
POOL_OPS = {"MaxPool2d": "MAX_POOL_2D", "AvgPool2d": "AVERAGE_POOL_2D", "AdaptiveAvgPool2d": "MEAN"}
# The ops each layer becomes in a TFLite / Edge TPU graph (batch-norm folds into the conv, ReLU fuses).
TFLITE_OPS = {"conv": "CONV_2D", "dense": "FULLY_CONNECTED", "reshape": "RESHAPE", "act": None, "bn": None,
              "dropout": None}


def _kind(module) -> str:
    return KINDS.get(type(module).__name__, type(module).__name__.lower())


def tflite_op(module) -> str | None:
    name = type(module).__name__
    if name in POOL_OPS:
        return POOL_OPS[name]
    return TFLITE_OPS.get(_kind(module), name)


def op_table(module, input_shape=(1, 48, 48)) -> list[dict]:
    """One row per leaf layer (batch 1): name, kind, tflite op, in/out values, params, MACs."""
    return [{"name": name, "kind": _kind(mod), "tflite_op": tflite_op(mod), "in_shape": in_shape, "out_shape": out_shape,
             "in_values": math.prod(in_shape), "out_values": math.prod(out_shape),
             "params": int(sum(p.numel() for p in mod.parameters())), "macs": layer_macs(mod, out_shape),
             "stride": getattr(mod, "stride", None), "dilation": getattr(mod, "dilation", None)}
            for name, mod, in_shape, out_shape in trace_layers(module, input_shape)]
