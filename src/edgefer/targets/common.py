"""Shared machinery of the targets: resolving what a call is about, exporting, running, modeled cost."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.nn.spec import ArchSpec
from edgefer.targets.base import Artifact, Cost, Violation, require_compliant
from edgefer.targets.costmodel import citations, fitted_model, layer_latency
from edgefer.targets.export import export_onnx, missing_package
from edgefer.targets.layers import op_table
from edgefer.targets.runtimes import run_artifact


def spec_of(subject) -> ArchSpec:
    """The ArchSpec behind a FerModel, an ArchSpec, an Artifact or an artifact folder."""
    if isinstance(subject, ArchSpec):
        return subject
    if hasattr(subject, "spec") and isinstance(subject.spec, ArchSpec):
        return subject.spec
    if isinstance(subject, (str, Path)):
        subject = Artifact.load(subject)
    if isinstance(subject, Artifact):
        if not subject.arch:
            raise EdgeferError("artifact manifest carries no ArchSpec", subject.path)
        return ArchSpec.from_dict(subject.arch, str(subject.path))
    raise EdgeferError(f"expected a model, an ArchSpec or an artifact, got {type(subject).__name__}")


def calibration_inputs(model, n: int = 300, seed: int = 0) -> np.ndarray:
    """Representative inputs for int8 calibration: images of the model's own training split (never its
    test set), prepared in its input mode."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import training_set

    train = training_set(model)
    pick = np.random.default_rng(seed).permutation(len(train))[:n]
    return prepare_input(train.images[pick], model.input_mode)


class BaseTarget:
    """One device. Subclasses set the class attributes and override what differs."""

    name = ""
    label = ""
    runtime = ""
    latency_source = "modeled"
    artifact_format = "onnx"
    precision = "fp32"
    requires: tuple[tuple[str, str], ...] = (("onnx", "onnx"), ("onnxruntime", "onnxruntime"))
    accuracy_note = ""

    def available(self) -> tuple[bool, str]:
        """Whether this machine can export and run this target's artifacts (and why not). Looks the packages
        up without importing them: litert-torch takes seconds to import, and listing targets must stay quick."""
        for module, package in self.requires:
            if importlib.util.find_spec(module) is None:
                return False, missing_package(package)
        return True, "ok"

    def describe(self) -> dict:
        ok, why = self.available()
        return {"target": self.name, "label": self.label, "runtime": self.runtime, "artifact": self.artifact_format,
                "precision": self.precision, "latency": self.latency_source, "accuracy": "measured" if ok else "unavailable",
                "available": ok, "why": why}

    # --- check ---------------------------------------------------------------------------------------
    def check(self, subject) -> list[Violation]:
        if isinstance(subject, (Artifact, str, Path)) and not isinstance(subject, ArchSpec):
            artifact = subject if isinstance(subject, Artifact) else Artifact.load(subject)
            return self.check_artifact(artifact)
        return self.check_layers(op_table(spec_of(subject).build(), self._input_shape(spec_of(subject))))

    def check_layers(self, layers: list[dict]) -> list[Violation]:
        return []

    def check_artifact(self, artifact: Artifact) -> list[Violation]:
        problems = []
        if artifact.format != self.artifact_format:
            problems.append(Violation("artifact-format", f"{self.name} takes {self.artifact_format} artifacts, got {artifact.format}"))
        if not Path(artifact.path).is_file():
            problems.append(Violation("artifact-missing", f"no file {artifact.path}"))
        return problems

    @staticmethod
    def _input_shape(spec: ArchSpec) -> tuple[int, int, int]:
        return (spec.in_channels, spec.input_size, spec.input_size)

    # --- export --------------------------------------------------------------------------------------
    def export(self, model, out_dir: str | Path, calibration: np.ndarray | None = None) -> Artifact:
        ok, why = self.available()
        if not ok:
            raise EdgeferError(f"cannot export for {self.name}: {why}")
        require_compliant(self.name, self.check(model))
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = self._export(model, out_dir, calibration)
        artifact.classes, artifact.input_mode = tuple(model.classes), model.input_mode
        artifact.input_shape = (1, *self._input_shape(model.spec))
        artifact.arch = model.spec.to_dict()
        artifact.save_manifest()
        return artifact

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        path = export_onnx(model, out_dir / "model.onnx")
        return Artifact(self.name, path, "onnx", "fp32", [path.name])

    # --- run -----------------------------------------------------------------------------------------
    def run(self, artifact: Artifact | str | Path, inputs: np.ndarray) -> np.ndarray:
        artifact = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        require_compliant(self.name, self.check_artifact(artifact), artifact.path)
        return run_artifact(artifact, inputs)

    # --- cost ----------------------------------------------------------------------------------------
    def cost(self, subject) -> Cost:
        return self.modeled_cost(subject)

    def fallback_layers(self, layers: list[dict]) -> set[str]:
        return set()

    def modeled_cost(self, subject) -> Cost:
        spec = spec_of(subject)
        layers = op_table(spec.build(), self._input_shape(spec))
        model = fitted_model(self.name)
        unsupported = self.fallback_layers(layers)
        result = layer_latency(model, layers, spec.in_channels * spec.input_size ** 2, spec.num_classes, unsupported)
        latency = result["latency_s"]
        power = model.active_power_w
        notes = [f"fitted to published points: {', '.join(model.fitted)}"] if model.fitted else \
            ["no published points for this device: constants are cited or assumed, the model is unvalidated"]
        if unsupported:
            notes.append(f"{len(unsupported)} layer(s) fall back to the {model.fallback_device} CPU: {sorted(unsupported)}")
        keys = tuple(k for k in model.citation_keys if k in citations())
        return Cost(latency, power, None if power is None else power * latency, "modeled", keys,
                    {**result["terms"], "layers": result["layers"]}, notes)


def export_to_temp(target, model, calibration=None):
    """Export into a temporary folder; returns (artifact, cleanup)."""
    folder = Path(tempfile.mkdtemp(prefix=f"edgefer-{target.name}-"))
    return target.export(model, folder, calibration), lambda: shutil.rmtree(folder, ignore_errors=True)
