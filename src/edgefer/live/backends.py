"""Classifier backends for the live pipeline: one call per frame takes every face of that frame.

``torch`` runs the FerModel's module directly. ``onnxruntime`` exports it once with
``torch.onnx.export`` (dynamic batch) into a cache keyed by the weights and runs it with ONNX
Runtime's CPU provider, which is several times faster per small batch than eager torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgefer.errors import EdgeferError

if TYPE_CHECKING:
    from edgefer.nn.model import FerModel

BACKENDS = ("auto", "onnxruntime", "torch")
ONNX_OPSET = 18


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def cache_dir() -> Path:
    """Where exported models are kept: ``$EDGEFER_CACHE``, else ``$XDG_CACHE_HOME/edgefer`` or ~/.cache/edgefer."""
    if os.environ.get("EDGEFER_CACHE"):
        return Path(os.environ["EDGEFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgefer"


class Classifier:
    name = "classifier"

    def __init__(self, model: FerModel):
        self.model = model
        self.classes = model.classes

    def logits(self, inputs: np.ndarray) -> np.ndarray:  # inputs: float32 N x 1 x 48 x 48
        raise NotImplementedError

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        if len(inputs) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return _softmax(self.logits(np.ascontiguousarray(inputs, dtype=np.float32)))


class TorchClassifier(Classifier):
    name = "torch"

    def __init__(self, model: FerModel, threads: int | None = None):
        super().__init__(model)
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.module = model.module.cpu().eval()

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(inputs)).numpy()


def _weights_digest(model: FerModel) -> str:
    digest = hashlib.sha256()
    digest.update(repr(sorted(model.spec.to_dict().items())).encode())
    for name, tensor in sorted(model.module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def export_onnx(model: FerModel, path: Path) -> Path:
    """Export the model's module to ONNX with a dynamic batch dimension (written atomically)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    example = torch.zeros(1, model.spec.in_channels, model.spec.input_size, model.spec.input_size)
    module = model.module.cpu().eval()
    # The exporter logs about optional torchvision ops and deprecations; none concern this model.
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(module, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: batch},),
                              opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False)
    except Exception as exc:  # the exporter raises many types; the user needs one clear line
        tmp.unlink(missing_ok=True)
        raise EdgeferError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           "use --backend torch", path) from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    tmp.replace(path)
    return path


class OnnxRuntimeClassifier(Classifier):
    name = "onnxruntime"

    def __init__(self, model: FerModel, threads: int | None = None, onnx_path: Path | None = None):
        super().__init__(model)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeferError("the onnxruntime backend needs the onnxruntime package (pip install onnxruntime), "
                               "or use --backend torch") from None
        if onnx_path is None:
            onnx_path = cache_dir() / "onnx" / f"{_weights_digest(model)}.onnx"
            if not onnx_path.is_file():
                export_onnx(model, onnx_path)
        self.onnx_path = onnx_path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads burn the cores that decoding and face detection need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgeferError(f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})", onnx_path) from None
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: inputs})[0]


def make_classifier(model: FerModel, backend: str = "auto", threads: int | None = None) -> Classifier:
    """``auto``: ONNX Runtime when it is installed and the export works, else torch (with a warning)."""
    if backend == "torch":
        return TorchClassifier(model, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeClassifier(model, threads)
    if backend == "auto":
        try:
            return OnnxRuntimeClassifier(model, threads)
        except EdgeferError as exc:
            sys.stderr.write(f"warning: {exc}; classifying with torch instead\n")
            return TorchClassifier(model, threads)
    raise EdgeferError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
