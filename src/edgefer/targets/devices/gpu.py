"""A CUDA GPU, measured with torch (only where CUDA is available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.targets.base import Artifact, Cost, Violation, require_compliant
from edgefer.targets.common import BaseTarget
from edgefer.targets.registry import register_target
from edgefer.targets.runtimes import time_calls


@register_target
class GpuTarget(BaseTarget):
    name = "gpu"
    role = "host"
    order = 1
    search = None
    not_searchable = "its cost is measured on an exported artifact, with no power figure"
    label = "CUDA GPU (torch, FP32)"
    runtime = "torch CUDA"
    latency_source = "measured"
    artifact_format = "torch-safetensors"
    requires = ()

    def __init__(self, warmup: int = 20, runs: int = 200):
        self.warmup, self.runs = warmup, runs

    def available(self):
        # No NVIDIA driver, no CUDA: answered without loading torch (listing targets stays quick).
        if not any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl")):
            return False, "no CUDA device on this machine"
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device on this machine"
        return True, torch.cuda.get_device_name(0)

    def check_layers(self, layers):
        ok, why = self.available()
        return [] if ok else [Violation("cuda", why)]

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        path = out_dir / "model.safetensors"
        model.save(path)
        return Artifact(self.name, path, self.artifact_format, "fp32", [path.name])

    def _module(self, artifact: Artifact):
        from edgefer.nn.model import FerModel

        require_compliant(self.name, self.check_artifact(artifact) + self.check_layers([]), artifact.path)
        return FerModel.load(artifact.path).module.cuda().eval()

    def run(self, artifact, inputs: np.ndarray) -> np.ndarray:
        import torch

        artifact = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        module = self._module(artifact)
        with torch.no_grad():
            out = [module(torch.as_tensor(x[None], dtype=torch.float32).cuda()).cpu().numpy() for x in inputs]
        return np.concatenate(out)

    def cost(self, subject) -> Cost:
        if not isinstance(subject, (Artifact, str, Path)):
            raise EdgeferError("gpu cost is measured: export the model first and pass the artifact")
        return self.measure(subject if isinstance(subject, Artifact) else Artifact.load(subject))

    def measure(self, artifact: Artifact) -> Cost:
        """Measured latency of batch-1 inference on the GPU (synchronised); no power figure."""
        import torch

        module = self._module(artifact)
        x = torch.zeros(artifact.input_shape, device="cuda")
        with torch.no_grad():
            stats = time_calls(lambda: module(x), self.warmup, self.runs, sync=torch.cuda.synchronize)
        breakdown = {**stats, "device": torch.cuda.get_device_name(0), "batch": 1}
        return Cost(stats["median_s"], None, None, "measured", ("this-project",), breakdown,
                    ["power not measured: power_w and energy_j are None"])
