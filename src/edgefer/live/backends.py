"""Classifier backends for the live pipeline: one call per frame takes every face of that frame.

``torch`` runs the FerModel's module directly. ``onnxruntime`` exports it once (the targets'
exporter, dynamic batch) into a cache keyed by the weights and runs it with ONNX Runtime's CPU
provider, which is several times faster per small batch than eager torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgefer.errors import EdgeferError

if TYPE_CHECKING:
    from edgefer.nn.model import FerModel

# tflite is not offered: litert-torch cannot be installed beside the pinned stack (see README).
BACKENDS = ("auto", "onnxruntime", "openvino", "torch", "snn")


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


class OnnxRuntimeClassifier(Classifier):
    name = "onnxruntime"

    def __init__(self, model: FerModel, threads: int | None = None, onnx_path: Path | None = None):
        super().__init__(model)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeferError("the onnxruntime backend needs the onnxruntime package (pip install onnxruntime), "
                               "or use --backend torch") from None
        self.onnx_path = onnx_path or _cached_onnx(model)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads burn the cores that decoding and face detection need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgeferError(f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})", self.onnx_path) from None
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: inputs})[0]


def _cached_onnx(model: FerModel) -> Path:
    """The model as dynamic-batch ONNX, exported once into the cache (keyed by the weights)."""
    onnx_path = cache_dir() / "onnx" / f"{model.digest()}.onnx"
    if not onnx_path.is_file():
        from edgefer.targets.export import export_onnx

        export_onnx(model, onnx_path, dynamic_batch=True)
    return onnx_path


class OpenVinoClassifier(Classifier):
    """OpenVINO's CPU plugin on the same cached ONNX export (FP32; the NCS2 target exports FP16 IR)."""

    name = "openvino"

    def __init__(self, model: FerModel, threads: int | None = None):
        super().__init__(model)
        from edgefer.targets.export import need

        ov = need("openvino")
        core = ov.Core()
        onnx_path = _cached_onnx(model)
        # FP32 compute: on CPUs with AVX512-BF16 the plugin otherwise runs in bf16.
        config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        try:
            self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        except Exception as exc:  # noqa: BLE001  (OpenVINO raises its own exception types)
            raise EdgeferError(f"OpenVINO cannot compile the model ({str(exc).splitlines()[0][:200]})", onnx_path) from None

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(inputs)[0])


class SpikingClassifier(Classifier):
    """The model through the ``loihi`` target: converted to a rate-coded spiking network with Loihi's
    precision and simulated for the timesteps its export chose per face; probabilities are the softmax of
    the readout's scores, spike rates in the CNN's logit units (``snn.evaluate.readout_scores``). The
    export (thresholds calibrated and T chosen on the model's training data) is cached like the ONNX one."""

    name = "snn"

    def __init__(self, model: FerModel, threads: int | None = None):
        super().__init__(model)
        import torch

        from edgefer.targets import get_target

        if threads:
            torch.set_num_threads(threads)
        self.target = get_target("loihi")
        self.artifact = _cached_spiking_export(model, self.target)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.target.run(self.artifact, inputs).astype(np.float32)


def _cached_spiking_export(model: FerModel, target):
    """The model's Loihi export, made once into the cache (keyed by the weights): written to a temporary
    folder beside it and renamed into place, so an interrupted export leaves no half-written entry."""
    import shutil
    import tempfile

    from edgefer.targets.base import Artifact

    folder = cache_dir() / "snn" / model.digest()
    if not (folder / Artifact.MANIFEST).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            target.export(model, staging)
            shutil.rmtree(folder, ignore_errors=True)  # a damaged entry without its manifest
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Artifact.load(folder)


def make_classifier(model: FerModel, backend: str = "auto", threads: int | None = None) -> Classifier:
    """``auto``: ONNX Runtime when it is installed and the export works, else torch (with a warning)."""
    if backend == "torch":
        return TorchClassifier(model, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeClassifier(model, threads)
    if backend == "openvino":
        return OpenVinoClassifier(model, threads)
    if backend == "snn":
        return SpikingClassifier(model, threads)
    if backend == "auto":
        try:
            return OnnxRuntimeClassifier(model, threads)
        except EdgeferError as exc:
            sys.stderr.write(f"warning: {exc}; classifying with torch instead\n")
            return TorchClassifier(model, threads)
    raise EdgeferError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
