"""Raspberry Pi 4 (4x Cortex-A72): the ONNX FP32 artifact; accuracy measured in onnxruntime here,
latency modeled. (FP32 TFLite would need a TFLite converter; litert-torch does not install next to
this project's pins, so the Pi runs ONNX, which onnxruntime supports on aarch64.)"""

from __future__ import annotations

from edgefer.targets.base import Violation
from edgefer.targets.common import BaseTarget

RAM_BYTES = 2 * 1024 ** 3  # the smallest common Pi 4 (2 GB) variant; FP32 weights must fit with room to spare


class Rpi4Target(BaseTarget):
    name = "rpi4"
    label = "Raspberry Pi 4 (4x Cortex-A72 1.5 GHz), ONNX FP32"
    runtime = "onnxruntime (accuracy here); latency: Cortex-A72 cost model"

    def check_layers(self, layers):
        weights = 4 * sum(r["params"] for r in layers)
        if weights > RAM_BYTES / 4:
            return [Violation("memory", f"{weights / 1e6:.0f} MB of FP32 weights is too large for a 2 GB Pi 4")]
        return []
