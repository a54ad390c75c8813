"""Raspberry Pi 5 (4x Cortex-A76): the same FP32 TFLite as the Pi 4, run on the LiteRT interpreter with
its XNNPACK CPU kernels for accuracy; latency from the Cortex-A76 cost model fitted to published Pi 5
measurements (``rpi5.json``)."""

from __future__ import annotations

from edgefer.targets.devices.rpi4 import Rpi4Target
from edgefer.targets.registry import register_target


@register_target
class Rpi5Target(Rpi4Target):
    name = "rpi5"
    order = 11
    constants = "rpi5.json"
    label = "Raspberry Pi 5 (4x Cortex-A76 2.4 GHz), TFLite FP32"
    runtime = "LiteRT interpreter (XNNPACK) on the FP32 TFLite (accuracy here); latency: Cortex-A76 cost model"
