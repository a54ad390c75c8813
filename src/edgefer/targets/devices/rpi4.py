"""Raspberry Pi 4 (4x Cortex-A72): an FP32 TFLite, the Pi's usual runtime (LiteRT with its XNNPACK CPU
kernels); accuracy measured here in the same interpreter, latency modeled."""

from __future__ import annotations

from pathlib import Path

from edgefer.targets.base import Artifact, Violation
from edgefer.targets.common import BaseTarget
from edgefer.targets.registry import register_target
from edgefer.targets.export import export_tflite_fp32

RAM_BYTES = 2 * 1024 ** 3  # the smallest common Pi 4 (2 GB) variant; FP32 weights must fit with room to spare


@register_target
class Rpi4Target(BaseTarget):
    name = "rpi4"
    order = 10
    constants = "rpi4.json"
    label = "Raspberry Pi 4 (4x Cortex-A72 1.5 GHz), TFLite FP32"
    runtime = "LiteRT interpreter (XNNPACK) on the FP32 TFLite (accuracy here); latency: Cortex-A72 cost model"
    artifact_format = "tflite"
    requires = (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert"))

    def check_layers(self, layers):
        weights = 4 * sum(r["params"] for r in layers)
        if weights > RAM_BYTES / 4:
            return [Violation("memory", f"{weights / 1e6:.0f} MB of FP32 weights is too large for a 2 GB Pi 4")]
        return []

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        path = export_tflite_fp32(model, out_dir / "model.tflite")
        return Artifact(self.name, path, self.artifact_format, "fp32", [path.name])
