"""Coral USB Accelerator (Edge TPU): a full-integer int8 TFLite (int8 input and output, made with
litert-torch's PT2E quantisation), run in the LiteRT interpreter for accuracy; its ops and tensors are
checked against the Edge TPU's published model requirements and supported-operations list; latency modeled.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from edgefer.targets.base import Artifact, Violation
from edgefer.targets.common import BaseTarget, export_int8_tflite
from edgefer.targets.registry import SearchHints, register_target
from edgefer.targets.runtimes import tflite_interpreter

INTEGER_TYPES = ("int8", "uint8")  # what the Edge TPU computes with; int32 only holds biases and shape operands


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


@register_target
class CoralTarget(BaseTarget):
    name = "coral"
    order = 40
    constants = "coral.json"
    needs_calibration = True
    # Warnings that mean part of the graph leaves the int8 accelerator (CPU fallback, weights streamed over
    # USB): a spec that triggers them is not "int8-friendly" and is not searched.
    search = SearchHints(rejected_warnings=("edgetpu-op", "cpu-fallback", "sram"))
    label = "Coral USB Accelerator (Edge TPU), full-integer int8"
    runtime = "LiteRT interpreter on the int8 TFLite (accuracy here); latency: Edge TPU cost model"
    artifact_format = "tflite"
    precision = "int8"
    requires = (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert"))
    accuracy_note = "int8 kernels of the LiteRT CPU runtime on the same full-integer TFLite the Edge TPU compiler takes"

    def check_layers(self, layers):
        problems = edgetpu_mapping([(r["name"], r["tflite_op"]) for r in layers])
        for r in layers:
            dilation = r.get("dilation")
            if r["kind"] == "conv" and dilation and dilation[0] != dilation[1]:
                problems.append(Violation("conv-dilation", "Edge TPU convolutions need the same dilation in x and y", "error", r["name"]))
        weights = sum(r["params"] for r in layers)  # int8: one byte each
        sram = self.constants_data()["constants"]["onchip_weight_bytes"]["value"]
        if weights > sram:
            problems.append(Violation("sram", f"{weights / 1e6:.1f} MB of int8 weights exceed the ~{sram / 1e6:.0f} MB on-chip SRAM: the rest streams over USB every inference", "warning"))
        return problems

    def fallback_layers(self, layers):
        return {v.layer for v in self.check_layers(layers) if v.rule in ("edgetpu-op", "cpu-fallback")}

    def check_artifact(self, artifact: Artifact):
        problems = super().check_artifact(artifact)
        if problems:
            return problems
        interpreter = tflite_interpreter(artifact, default_delegates=False)  # the ops as written in the file
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        model_inputs = interpreter.get_input_details()
        for kind, details in (("input", model_inputs), ("output", interpreter.get_output_details())):
            for t in details:
                if np.dtype(t["dtype"]).name not in INTEGER_TYPES:
                    problems.append(Violation("all-int8", f"model {kind} {t['name']!r} is {np.dtype(t['dtype']).name}, not int8"))
        dynamic = [t["name"] for t in tensors.values() if any(d < 0 for d in t["shape_signature"])]
        if dynamic:
            problems.append(Violation("static-shape", f"{len(dynamic)} tensor(s) have a dynamic dimension, e.g. {dynamic[0]!r}"))
        graph_inputs = {t["index"] for t in model_inputs}
        ops = []
        for op in interpreter._get_ops_details():  # the interpreter's only listing of ops (name, tensor indices)
            layer = f"op {op['index']} {op['op_name']}"
            used = [tensors[i] for i in (*op["inputs"], *op["outputs"]) if i >= 0]
            floats = sorted({np.dtype(t["dtype"]).name for t in used if np.dtype(t["dtype"]).kind == "f"})
            if floats:
                problems.append(Violation("all-int8", f"{op['op_name']} computes on {'/'.join(floats)} tensors", "error", layer))
            # Activations (what ops produce, and the model input) with more than 3 dimensions larger than 1 are
            # outside what the Edge TPU maps: such an op falls back like an unsupported one. Filters may be 4-D.
            activations = [tensors[i] for i in op["outputs"]] + [tensors[i] for i in op["inputs"] if i in graph_inputs]
            too_many_dims = any(len(t["shape"]) > 3 and any(d > 1 for d in t["shape"][:-3]) for t in activations)
            ops.append((layer, f"{op['op_name']} on a tensor with > 3 non-unit dimensions" if too_many_dims else op["op_name"]))
        return problems + edgetpu_mapping(ops)

    _export = export_int8_tflite
