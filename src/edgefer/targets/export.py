"""Real exports: ONNX (checked), OpenVINO IR FP16, full-integer int8 ONNX (QDQ, int8 input/output).

Heavy runtimes are imported on use; a missing one is a clear EdgeferError naming the package.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from edgefer.errors import EdgeferError

OPSET = 17


def need(module: str, package: str | None = None):
    """Import an optional runtime or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EdgeferError(f"this needs the optional package {package or module!r} (pip install {package or module})") from None


def export_onnx(model, path: str | Path, dynamic_batch: bool = False) -> Path:
    """FP32 ONNX, checked by onnx, written atomically. Static batch 1 by default (edge compilers
    want static shapes); ``dynamic_batch`` for hosts that classify all faces of a frame at once."""
    onnx = need("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    spec = model.spec
    dummy = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    module = model.module.cpu().eval()
    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, dummy, str(tmp), input_names=["input"], output_names=["logits"],
                              opset_version=OPSET, dynamo=False, dynamic_axes=dynamic_axes)
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    except Exception as exc:  # noqa: BLE001  (the exporter and the checker raise many types)
        tmp.unlink(missing_ok=True)
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeferError(f"ONNX export failed ({first_line})", path) from None
    tmp.replace(path)
    return path


def export_openvino_fp16(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """OpenVINO IR with FP16 weights (what the NCS2's MYRIAD plugin ran)."""
    ov = need("openvino")
    xml_path = Path(xml_path)
    ir = ov.convert_model(str(onnx_path))
    ov.save_model(ir, str(xml_path), compress_to_fp16=True)
    return xml_path


class _Calibration:
    """Feeds representative inputs one at a time to onnxruntime's static quantiser."""

    def __init__(self, inputs: np.ndarray):
        self._items = iter([{"input": x[None].astype(np.float32)} for x in inputs])

    def get_next(self):
        return next(self._items, None)


def export_int8_qdq(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray) -> tuple[Path, dict]:
    """Full-integer int8 ONNX: int8 weights (per channel) and activations, calibrated on representative
    inputs, then the graph's float input/output quantise/dequantise steps are cut so that the model takes
    and returns int8 tensors (as a full-integer TFLite for the Edge TPU does). Returns the path and the
    input/output quantisation parameters the caller needs."""
    onnx = need("onnx")
    quantization = need("onnxruntime.quantization", "onnxruntime")
    from onnx import numpy_helper

    if calibration is None or len(calibration) == 0:
        raise EdgeferError("int8 export needs representative inputs for calibration")
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.stem + ".qdq-float-io.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint through the root logger
    try:
        quantization.quantize_static(
            str(onnx_path), str(tmp), _Calibration(calibration), quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8, per_channel=True,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    finally:
        root.setLevel(level)
    graph_model = onnx.load(str(tmp))
    tmp.unlink()
    graph = graph_model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    input_name, output_name = graph.input[0].name, graph.output[0].name
    quant_in = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == input_name]
    dequant_out = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == output_name]
    if len(quant_in) != 1 or len(dequant_out) != 1:
        raise EdgeferError("quantised graph has no single input quantise / output dequantise step to make int8 I/O", onnx_path)
    q, d = quant_in[0], dequant_out[0]
    params = {"input_scale": float(inits[q.input[1]]), "input_zero_point": int(inits[q.input[2]]),
              "output_scale": float(inits[d.input[1]]), "output_zero_point": int(inits[d.input[2]])}
    in_shape = [dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim]
    out_shape = [dim.dim_value for dim in graph.output[0].type.tensor_type.shape.dim]
    graph.node.remove(q)
    graph.node.remove(d)
    for node in graph.node:  # the int8 tensors take the graph's I/O names
        node.input[:] = [input_name if x == q.output[0] else x for x in node.input]
        node.output[:] = [output_name if x == d.input[0] else x for x in node.output]
    del graph.input[:]
    del graph.output[:]
    graph.input.append(onnx.helper.make_tensor_value_info(input_name, onnx.TensorProto.INT8, in_shape))
    graph.output.append(onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.INT8, out_shape))
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, str(out_path))
    return out_path, params


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * scale
