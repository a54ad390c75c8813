"""Real exports: ONNX (checked), OpenVINO IR FP16, TFLite FP32 and full-integer int8 TFLite (int8 input
and output, calibrated PT2E quantisation through litert-torch, no TensorFlow).

Heavy runtimes are imported on use; a missing one is a clear EdgeferError naming the package.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from edgefer.console import native_stderr_to
from edgefer.errors import EdgeferError

OPSET = 17


def missing_package(package: str) -> str:
    return f"this needs the optional package {package!r} (pip install {package})"


def need(module: str, package: str | None = None):
    """Import an optional runtime or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EdgeferError(missing_package(package or module)) from None


def export_onnx(model, path: str | Path, dynamic_batch: bool = False) -> Path:
    """FP32 ONNX, checked by onnx, written atomically. Static batch 1 by default (edge compilers
    want static shapes); ``dynamic_batch`` for hosts that classify all faces of a frame at once."""
    import torch

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


def _litert_torch():
    """litert-torch with its progress display off: it prints to stdout, which ``--json`` output needs clean."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # torchao warns about its optional CUDA kernels on import
    # Its import logs from C++ (absl, TensorFlow's oneDNN notice) and warns through torch's pytree
    # about an Enum registration: nothing a user can act on.
    with warnings.catch_warnings(), native_stderr_to():
        warnings.simplefilter("ignore")
        litert_torch = need("litert_torch", "litert-torch")
    litert_torch.config.show_progress = False
    return litert_torch


def _sample_input(model):
    import torch

    spec = model.spec
    return torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)


def _write_tflite(convert, path: str | Path) -> Path:
    """Run a litert-torch conversion and write its flatbuffer atomically; failures name the output file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.tflite")
    log = path.with_suffix(".converter.log")
    try:
        with warnings.catch_warnings(), native_stderr_to(log):
            warnings.simplefilter("ignore")  # torch.export's pytree deprecation notices
            convert().export(str(tmp))
    except Exception as exc:  # noqa: BLE001  (torch.export and the MLIR converter raise many types)
        tmp.unlink(missing_ok=True)
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeferError(f"TFLite export failed ({first_line[:200]}; converter log: {log})", path) from None
    tmp.replace(path)
    return path


def export_tflite_fp32(model, path: str | Path) -> Path:
    """FP32 TFLite, static batch 1, NCHW input like the torch model (the converter adds the layout change)."""
    litert_torch = _litert_torch()
    module = model.module.cpu().eval()
    return _write_tflite(lambda: litert_torch.convert(module, (_sample_input(model),)), path)


def export_tflite_int8(model, path: str | Path, calibration: np.ndarray) -> Path:
    """Full-integer int8 TFLite, what the Edge TPU compiler takes: PT2E post-training quantisation with
    per-channel symmetric int8 weights and int8 activations whose ranges come from histograms over the
    representative ``calibration`` inputs; the converter's static QDQ mode turns it into int8 kernels
    with int8 input and output tensors (their scale and zero point are in the file)."""
    import torch

    litert_torch = _litert_torch()
    pt2e = need("litert_torch.quantize.pt2e_quantizer", "litert-torch")
    quant_config = need("litert_torch.quantize.quant_config", "litert-torch")
    quantize_pt2e = need("torchao.quantization.pt2e.quantize_pt2e", "torchao")
    if calibration is None or len(calibration) == 0:
        raise EdgeferError("int8 export needs representative inputs for calibration")
    sample = _sample_input(model)
    quantizer = pt2e.PT2EQuantizer().set_global(pt2e.get_symmetric_quantization_config(is_per_channel=True))

    def convert():
        graph = torch.export.export(model.module.cpu().eval(), (sample,)).module()
        observed = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for x in np.asarray(calibration, dtype=np.float32):  # one at a time: the graph is traced for batch 1
                observed(torch.from_numpy(x[None]))
        quantized = quantize_pt2e.convert_pt2e(observed, fold_quantize=False)
        # Traced from the eval-mode module, so dropout and batch-norm are already their eval ops; exported
        # graphs refuse .eval(), and this clears the flag that litert-torch would warn about.
        quantized.training = False
        return litert_torch.convert(quantized, (sample,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))

    return _write_tflite(convert, path)
