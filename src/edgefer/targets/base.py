"""The Target protocol: what every edge device offers to the rest of edgefer.

``check(spec_or_artifact) -> violations``, ``export(model, out_dir) -> Artifact``,
``run(artifact, inputs) -> logits``, ``cost(artifact_or_spec) -> Cost`` and
``evaluate(artifact, inputs) -> (logits, Cost)`` (both from one run: a spiking chip's cost depends on
the spikes of the inputs). Behind ``cost``: ``modeled_cost(spec)`` on modeled devices (the layer
table of the ArchSpec), ``measure(artifact)`` on measured ones (timed runs of the real artifact). Every Cost says whether its
latency was ``measured`` here in a real runtime or ``modeled`` by the analytical model, and names the
citations of the constants it used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edgefer.errors import EdgeferError

SOURCES = ("measured", "modeled")


@dataclass(frozen=True)
class Violation:
    """One way a model breaks a target's rules. ``error`` blocks export; ``warning`` only costs speed."""

    rule: str
    message: str
    severity: str = "error"
    layer: str | None = None

    def __str__(self) -> str:
        where = f" [{self.layer}]" if self.layer else ""
        return f"{self.severity}: {self.rule}{where}: {self.message}"


@dataclass
class Artifact:
    """An exported model file for one target, plus what its runtime needs to know."""

    target: str
    path: Path
    format: str  # onnx | openvino-ir | tflite
    precision: str  # fp32 | fp16 | int8
    files: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = ()
    input_mode: str = "gray"
    input_shape: tuple[int, ...] = (1, 1, 48, 48)
    notes: list[str] = field(default_factory=list)
    arch: dict = field(default_factory=dict)  # the ArchSpec, so that cost() works from the artifact alone
    settings: dict = field(default_factory=dict)  # what the target's runtime needs beyond the files (e.g. an SNN's input scale)

    MANIFEST = "artifact.json"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def save_manifest(self) -> Path:
        manifest = self.path.parent / self.MANIFEST
        # the file name only: the artifact folder can be moved or copied to the device as a whole
        manifest.write_text(json.dumps({**self.to_dict(), "path": self.path.name}, indent=2) + "\n")
        return manifest

    def copy_for(self, target, folder: str | Path) -> "Artifact":
        """This artifact's files in ``folder``, as ``target``'s artifact (two targets that run the same
        file, e.g. the Pi 4 and Pi 5's FP32 TFLite, share one export)."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.files:
            shutil.copyfile(Path(self.path).parent / name, folder / name)
        # the calibration stays; the accuracy note becomes the copying target's own
        notes = [n for n in self.notes if n.startswith("calibrated on")] + ([target.accuracy_note] if target.accuracy_note else [])
        copied = Artifact(**{**self.__dict__, "target": target.name, "path": folder / Path(self.path).name,
                             "files": list(self.files), "notes": notes})
        copied.save_manifest()
        return copied

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """An artifact from its folder (with artifact.json) or its manifest file."""
        path = Path(path)
        manifest = path / cls.MANIFEST if path.is_dir() else path
        if not manifest.is_file():
            raise EdgeferError(f"no {cls.MANIFEST} here: not an exported edgefer artifact", path)
        try:
            data = json.loads(manifest.read_text())
            data["path"] = manifest.parent / Path(data["path"]).name
            data["classes"] = tuple(data.get("classes", ()))
            data["input_shape"] = tuple(data.get("input_shape", (1, 1, 48, 48)))
            return cls(**data)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EdgeferError(f"corrupt artifact manifest ({exc})", manifest) from None


@dataclass
class Cost:
    """Latency, power and energy of one inference (batch 1) on one target."""

    latency_s: float
    power_w: float | None
    energy_j: float | None
    source: str  # measured | modeled
    citations: tuple[str, ...] = ()
    breakdown: dict = field(default_factory=dict)  # modeled: seconds per term; measured: percentiles, threads
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # target-specific figures the report shows (spikes, cores, ...)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")

    @property
    def fps(self) -> float:
        return 1.0 / self.latency_s if self.latency_s > 0 else float("inf")

    @property
    def pdp_j(self) -> float | None:
        """Power-delay product of one inference (W x s): the figure the study's AutoML minimises."""
        return None if self.power_w is None else self.power_w * self.latency_s

    def to_dict(self) -> dict:
        return {"latency_s": self.latency_s, "fps": self.fps, "power_w": self.power_w, "energy_j": self.energy_j,
                "pdp_j": self.pdp_j, "source": self.source, "citations": list(self.citations),
                "breakdown": self.breakdown, "notes": self.notes, "figures": self.figures}


@runtime_checkable
class Target(Protocol):
    name: str
    label: str
    runtime: str
    role: str  # host | edge | neuromorphic
    latency_source: str  # measured | modeled
    accuracy_source: str  # measured | simulated
    compare_roles: tuple[str, ...]

    def available(self) -> tuple[bool, str]: ...

    def check(self, subject) -> list[Violation]: ...

    def export(self, model, out_dir: str | Path, calibration: np.ndarray | None = None) -> Artifact: ...

    def run(self, artifact: Artifact, inputs: np.ndarray) -> np.ndarray: ...

    def cost(self, subject) -> Cost: ...

    def evaluate(self, artifact: Artifact, inputs: np.ndarray) -> tuple[np.ndarray, Cost]: ...


def errors_of(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.severity == "error"]


def require_compliant(target: str, violations: list[Violation], source=None) -> None:
    errors = errors_of(violations)
    if errors:
        raise EdgeferError(f"model violates {target} constraints: " + "; ".join(str(v) for v in errors), source)
