"""Jetson Orin Nano (Super): ONNX -> TensorRT FP16 on the Ampere GPU. TensorRT needs the device, so
accuracy is measured on the same ONNX in onnxruntime (FP32) and latency is modeled from published
Orin Nano Super TensorRT measurements (``jetson_orin_nano.json``)."""

from __future__ import annotations

from edgefer.targets.devices.jetson_nano import JetsonNanoTarget
from edgefer.targets.registry import register_target


@register_target
class JetsonOrinNanoTarget(JetsonNanoTarget):
    name = "jetson-orin-nano"
    order = 31
    constants = "jetson_orin_nano.json"
    label = "NVIDIA Jetson Orin Nano Super (Ampere GPU), ONNX -> TensorRT FP16"
