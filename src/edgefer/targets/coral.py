"""Coral USB Accelerator (Edge TPU): a full-integer int8 artifact, checked against the Edge TPU's
published model requirements and supported-operations list; latency modeled.

The issue asks for a full-integer int8 TFLite made with litert-torch (PT2E). litert-torch 0.10.0 (the
only release that accepts torch 2.13) needs xdsl, which pins typing-extensions < 4.13 against this
project's typing-extensions 4.16.0, so it cannot be installed here. The int8 artifact is therefore an
ONNX graph quantised by onnxruntime's static QDQ quantiser (int8 per-channel weights, int8
activations calibrated on training images, int8 input and output tensors) and run in onnxruntime's
int8 kernels: a proxy for the Edge TPU's arithmetic, labelled as such in every row.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from edgefer.targets.base import Artifact, Violation
from edgefer.targets.common import BaseTarget
from edgefer.targets.export import export_int8_qdq, export_onnx, need

QUANTISE_OPS = {"QuantizeLinear", "DequantizeLinear"}


@lru_cache(maxsize=None)
def edgetpu_rules() -> dict:
    return json.loads(resources.files("edgefer.targets").joinpath("data").joinpath("edgetpu_ops.json").read_text())


def edgetpu_mapping(ops: list[tuple[str, str | None]]) -> list[Violation]:
    """(layer name, TFLite op) in graph order -> violations: the compiler maps ops up to the first
    unsupported one; that op and every later one run on the host CPU (a warning: slower, not wrong)."""
    supported = set(edgetpu_rules()["supported_ops"])
    problems, fallen = [], False
    for name, op in ops:
        if op is None:
            continue  # folded into the previous op (batch-norm, fused ReLU, dropout)
        if op not in supported and not fallen:
            fallen = True
            problems.append(Violation("edgetpu-op", f"{op} is not supported by the Edge TPU: it and every later op run on the CPU", "warning", name))
        elif fallen:
            problems.append(Violation("cpu-fallback", f"{op} runs on the CPU (after an unsupported op)", "warning", name))
    return problems


class CoralTarget(BaseTarget):
    name = "coral"
    label = "Coral USB Accelerator (Edge TPU), full-integer int8"
    runtime = "onnxruntime int8 QDQ kernels (accuracy here, proxy for the int8 TFLite); latency: Edge TPU cost model"
    artifact_format = "onnx-int8-qdq"
    precision = "int8"
    accuracy_note = "int8 ONNX QDQ in onnxruntime: proxy for the Edge TPU's full-integer TFLite (litert-torch not installable)"

    def check_layers(self, layers):
        problems = edgetpu_mapping([(r["name"], r["tflite_op"]) for r in layers])
        for r in layers:
            dilation = r.get("dilation")
            if r["kind"] == "conv" and dilation and dilation[0] != dilation[1]:
                problems.append(Violation("conv-dilation", "Edge TPU convolutions need the same dilation in x and y", "error", r["name"]))
        weights = sum(r["params"] for r in layers)  # int8: one byte each
        if weights > 8e6:
            problems.append(Violation("sram", f"{weights / 1e6:.1f} MB of int8 weights exceed the ~8 MB on-chip SRAM: the rest streams over USB every inference", "warning"))
        return problems

    def fallback_layers(self, layers):
        return {v.layer for v in self.check_layers(layers) if v.rule in ("edgetpu-op", "cpu-fallback")}

    def check_artifact(self, artifact: Artifact):
        problems = super().check_artifact(artifact)
        if problems:
            return problems
        onnx = need("onnx")
        try:
            graph = onnx.load(str(artifact.path)).graph
        except Exception as exc:  # noqa: BLE001
            return [Violation("artifact-corrupt", f"unreadable ONNX ({str(exc)[:120]})")]
        int8 = onnx.TensorProto.INT8
        for kind, values in (("input", graph.input), ("output", graph.output)):
            for v in values:
                if v.type.tensor_type.elem_type != int8:
                    problems.append(Violation("all-int8", f"graph {kind} {v.name!r} is not int8"))
                if any(d.dim_value <= 0 for d in v.type.tensor_type.shape.dim):
                    problems.append(Violation("static-shape", f"graph {kind} {v.name!r} has a dynamic dimension"))
        produced_by = {o: n for n in graph.node for o in n.output}
        for node in graph.node:
            if node.op_type in QUANTISE_OPS:
                continue
            for name in node.input[:1]:  # the activation input must come out of an int8 dequantise
                src = produced_by.get(name)
                if name != graph.input[0].name and (src is None or src.op_type != "DequantizeLinear"):
                    problems.append(Violation("all-int8", f"{node.op_type} {node.name!r} reads a float tensor {name!r}", "error", node.name))
        ops = [(n.name, edgetpu_rules()["onnx_to_tflite"].get(n.op_type, n.op_type)) for n in graph.node if n.op_type not in QUANTISE_OPS]
        return problems + edgetpu_mapping(ops)

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        from edgefer.targets.common import calibration_inputs

        onnx_fp32 = export_onnx(model, out_dir / "model.fp32.onnx")
        if calibration is None:
            calibration = calibration_inputs(model)
        path, params = export_int8_qdq(onnx_fp32, out_dir / "model.int8.onnx", calibration)
        onnx_fp32.unlink()
        return Artifact(self.name, path, self.artifact_format, "int8", [path.name], quantization=params,
                        notes=[self.accuracy_note, f"calibrated on {len(calibration)} representative inputs"])
