"""Jetson Nano: ONNX -> TensorRT FP16 on the Maxwell GPU. TensorRT needs the device, so accuracy is
measured on the same ONNX in onnxruntime (FP32) and latency is modeled."""

from __future__ import annotations

from edgefer.targets.common import BaseTarget
from edgefer.targets.registry import register_target


@register_target
class JetsonNanoTarget(BaseTarget):
    name = "jetson-nano"
    order = 30
    constants = "jetson_nano.json"
    label = "NVIDIA Jetson Nano (Maxwell GPU), ONNX -> TensorRT FP16"
    runtime = "onnxruntime FP32 (accuracy here); latency: TensorRT FP16 cost model"
    accuracy_note = "FP32 onnxruntime accuracy; TensorRT FP16 rounding is not simulated"
