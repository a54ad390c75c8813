"""Intel Neural Compute Stick 2: OpenVINO IR FP16. OpenVINO 2023.0 removed the MYRIAD plugin, so the
IR runs on the OpenVINO CPU plugin for accuracy and the Myriad X latency is modeled."""

from __future__ import annotations

from pathlib import Path

from edgefer.targets.base import Artifact, Violation
from edgefer.targets.common import BaseTarget
from edgefer.targets.registry import register_target
from edgefer.targets.export import export_onnx, export_openvino_fp16

# Layers the Myriad X Neural Compute Engines run in hardware (Intel, "Optimize Networks for the NCS 2");
# others run in software on the SHAVE cores.
NCE_KINDS = {"conv", "dense", "pool", "act", "bn", "reshape", "dropout"}


@register_target
class Ncs2Target(BaseTarget):
    name = "ncs2"
    order = 20
    constants = "ncs2.json"
    label = "Intel Neural Compute Stick 2 (Myriad X), OpenVINO IR FP16"
    runtime = "OpenVINO CPU plugin on the FP16 IR (accuracy here); latency: Myriad X cost model"
    artifact_format = "openvino-ir"
    precision = "fp16"
    requires = (("onnx", "onnx"), ("openvino", "openvino"))
    accuracy_note = "FP16 weights; the CPU plugin computes activations in FP32"

    def check_layers(self, layers):
        return [Violation("shave-fallback", f"{r['kind']} is not an NCE layer: runs on the SHAVE cores", "warning", r["name"])
                for r in layers if r["kind"] not in NCE_KINDS]

    def check_artifact(self, artifact: Artifact):
        problems = super().check_artifact(artifact)
        if artifact.precision != "fp16":
            problems.append(Violation("fp16", f"the NCS2 runs FP16 IR only, got {artifact.precision}"))
        return problems

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        onnx_path = export_onnx(model, out_dir / "model.onnx")
        xml = export_openvino_fp16(onnx_path, out_dir / "model.xml")
        onnx_path.unlink()
        return Artifact(self.name, xml, self.artifact_format, "fp16", [xml.name, xml.with_suffix(".bin").name])
