"""Running artifacts in their real runtimes (onnxruntime, OpenVINO CPU, the LiteRT interpreter) and timing them."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from edgefer.console import native_stderr_to
from edgefer.errors import EdgeferError
from edgefer.targets.base import Artifact
from edgefer.targets.export import need


def _file(artifact: Artifact) -> Path:
    path = Path(artifact.path)
    if not path.is_file():
        raise EdgeferError("artifact file is missing", path)
    return path


def onnx_session(artifact: Artifact, threads: int | None = None):
    ort = need("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = _file(artifact)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own exception types)
        raise EdgeferError(f"corrupt or unreadable ONNX artifact ({str(exc).splitlines()[0][:200]})", path) from None


def openvino_model(artifact: Artifact, threads: int | None = None):
    ov = need("openvino")
    path = _file(artifact)
    core = ov.Core()
    # FP32 compute on every CPU: with AVX512-BF16 the plugin would otherwise run in bf16, so the
    # only precision loss measured is the IR's FP16 weights.
    config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    try:
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # noqa: BLE001
        raise EdgeferError(f"corrupt or unreadable OpenVINO IR ({str(exc).splitlines()[0][:200]})", path) from None


def tflite_interpreter(artifact: Artifact, threads: int | None = None, default_delegates: bool = True):
    """A LiteRT interpreter with tensors allocated. With ``default_delegates`` the CPU kernels are XNNPACK's
    (what the runtime uses on a Pi); without, every op stays a builtin op, as written in the file."""
    interpreter = need("ai_edge_litert.interpreter", "ai-edge-litert")
    path = _file(artifact)
    resolver = interpreter.OpResolverType.AUTO if default_delegates else interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with native_stderr_to():  # LiteRT announces its CPU delegate on stderr
            loaded = interpreter.Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
            loaded.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeferError(f"corrupt or unreadable TFLite artifact ({str(exc).splitlines()[0][:200]})", path) from None
    return loaded


def _to_tensor_type(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float input in the tensor's type: integer tensors take x / scale + zero point, saturated."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _from_tensor_type(q: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return q.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (q.astype(np.float32) - zero_point) * scale


def make_runner(artifact: Artifact, threads: int | None = None):
    """A function mapping one prepared float input (1 x C x H x W) to float logits (1 x K)."""
    if artifact.format == "onnx":
        session = onnx_session(artifact, threads)
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x.astype(np.float32)})[0]
    if artifact.format == "openvino-ir":
        compiled = openvino_model(artifact, threads)
        return lambda x: np.asarray(compiled(x.astype(np.float32))[0])
    if artifact.format == "tflite":
        interpreter = tflite_interpreter(artifact, threads)
        given, returned = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

        def run(x):
            interpreter.set_tensor(given["index"], _to_tensor_type(x, given))
            interpreter.invoke()
            return _from_tensor_type(interpreter.get_tensor(returned["index"]), returned)

        return run
    raise EdgeferError(f"unknown artifact format {artifact.format!r}", artifact.path)


def run_artifact(artifact: Artifact, inputs: np.ndarray) -> np.ndarray:
    """Logits for prepared inputs N x C x H x W, one image per call (the artifacts are batch 1)."""
    inputs = np.asarray(inputs, dtype=np.float32)
    expected = tuple(artifact.input_shape[1:])
    if inputs.ndim != 4 or inputs.shape[1:] != expected:
        raise EdgeferError(f"inputs of shape {inputs.shape}, the artifact takes N x {' x '.join(map(str, expected))}")
    runner = make_runner(artifact)
    out = [runner(x[None]) for x in inputs]
    return np.concatenate(out) if out else np.zeros((0, len(artifact.classes)), np.float32)


def timing_stats(seconds: list[float]) -> dict:
    ordered = sorted(seconds)

    def pct(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"runs": len(ordered), "median_s": statistics.median(ordered), "p90_s": pct(0.90), "p99_s": pct(0.99),
            "min_s": ordered[0], "mean_s": statistics.fmean(ordered)}


def time_calls(call, warmup: int = 20, runs: int = 200, sync=None) -> dict:
    """Wall-clock latency of ``call()``: warm-up first, then ``runs`` timed calls one by one."""
    for _ in range(warmup):
        call()
    if sync:
        sync()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        if sync:
            sync()
        seconds.append(time.perf_counter() - start)
    return timing_stats(seconds)


class pinned_threads:
    """Pins this process to the first ``threads`` CPUs it may use (restored on exit) and reports them."""

    def __init__(self, threads: int):
        self.threads = threads
        self.before = None
        self.cpus: list[int] = []

    def __enter__(self):
        if hasattr(os, "sched_getaffinity"):
            self.before = os.sched_getaffinity(0)
            self.cpus = sorted(self.before)[: self.threads]
            os.sched_setaffinity(0, self.cpus)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            os.sched_setaffinity(0, self.before)
        return False
