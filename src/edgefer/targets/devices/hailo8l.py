"""Hailo-8L (the Raspberry Pi AI Kit / AI HAT+, 13 TOPS): a full-integer int8 network. Hailo's Dataflow
Compiler (which makes the device's HEF file) is not installable here, so accuracy is measured on the
closest real int8 artifact, the full-integer TFLite (PT2E quantisation, int8 in and out) that the
Coral path also builds, in the LiteRT interpreter, and labelled so; latency is modeled from the
Hailo model zoo's batch-1 figures (``hailo8l.json``). The zoo publishes no list of unsupported layers
in a form stored here, so no op check is made: every edgefer layer (conv, dense, pooling, ReLU) is a
standard Hailo layer."""

from __future__ import annotations


from edgefer.targets.common import BaseTarget, export_int8_tflite
from edgefer.targets.registry import register_target


@register_target
class Hailo8lTarget(BaseTarget):
    name = "hailo8l"
    order = 41
    constants = "hailo8l.json"
    needs_calibration = True
    label = "Hailo-8L (Raspberry Pi AI Kit, 13 TOPS), int8"
    runtime = ("LiteRT interpreter on a full-integer int8 TFLite, the closest real int8 artifact to Hailo's HEF "
               "(accuracy here); latency: Hailo-8L cost model")
    artifact_format = "tflite"
    precision = "int8"
    requires = (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert"))
    accuracy_note = ("int8 accuracy of a full-integer TFLite (PT2E), not of a Hailo HEF: the Dataflow Compiler is "
                     "not installable here")

    _export = export_int8_tflite
