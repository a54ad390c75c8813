"""Shared machinery of the targets: resolving what a call is about, exporting, running, modeled cost.

``BaseTarget`` is the small base class a device module subclasses (and registers with
``@register_target``). Its class attributes are what the rest of edgefer reads: ``role``,
``runtime``, the artifact, ``compare_roles`` (which shipped models compare runs on it), ``search``
(the search-space hints, or None where searching makes no sense) and ``constants`` (the data file
beside the module).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgefer.data.dataset import Calibration
from edgefer.errors import EdgeferError, output_folder
from edgefer.nn.spec import ArchSpec
from edgefer.targets.base import Artifact, Cost, Violation, require_compliant
from edgefer.targets.registry import SearchHints
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


class BaseTarget:
    """One device. Subclasses set the class attributes and override what differs."""

    name = ""
    label = ""
    runtime = ""
    role = "edge"  # host | edge | neuromorphic (see registry.ROLES)
    order = 50  # where the target sits in listings and the report
    latency_source = "modeled"
    accuracy_source = "measured"  # measured on the artifact in its runtime | simulated
    artifact_format = "onnx"
    precision = "fp32"
    requires: tuple[tuple[str, str], ...] = (("onnx", "onnx"), ("onnxruntime", "onnxruntime"))
    accuracy_note = ""
    constants: str | None = None  # data file beside the module: cost-model constants, published points, citations
    compare_roles: tuple[str, ...] = ("cnn",)  # the shipped model roles compare runs here (a row each)
    search: SearchHints | None = SearchHints()  # None: not a search target, for the reason below
    not_searchable = ""
    needs_calibration = False  # export takes representative training images (int8 ranges, spiking thresholds)
    calibration_images = 300

    @classmethod
    def constants_data(cls) -> dict:
        """The target's constants file (None for targets without one), read once per class."""
        if cls.constants is None:
            return {}
        cached = cls.__dict__.get("_constants_cache")
        if cached is None:
            path = Path(sys.modules[cls.__module__].__file__).parent / cls.constants
            try:
                cached = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise EdgeferError(f"target {cls.name!r}: unreadable constants file ({exc})", path) from None
            cls._constants_cache = cached
        return cached

    def available(self) -> tuple[bool, str]:
        """Whether this machine can export and run this target's artifacts (and why not). Looks the packages
        up without importing them: litert-torch takes seconds to import, and listing targets must stay quick."""
        for module, package in self.requires:
            if importlib.util.find_spec(module) is None:
                return False, missing_package(package)
        return True, "ok"

    def describe(self) -> dict:
        ok, why = self.available()
        return {"target": self.name, "role": self.role, "label": self.label, "runtime": self.runtime,
                "artifact": self.artifact_format, "precision": self.precision, "latency": self.latency_source,
                "accuracy": self.accuracy_source if ok else "unavailable", "available": ok, "why": why,
                "searchable": self.search is not None}

    def validation(self) -> dict | None:
        """How well the latency model predicts published measurements (None for measured targets)."""
        if self.latency_source != "modeled":
            return None
        keys = ("status", "n_fit", "n_holdout", "mdape_fit", "mdape_holdout")
        if "published_latency" not in self.constants_data():
            return {"status": "unvalidated: no published measurements stored", "n_fit": 0, "n_holdout": 0,
                    "mdape_fit": None, "mdape_holdout": None}
        from edgefer.targets.costmodel import validation_report

        report = validation_report(self.name)
        return {k: report[k] for k in keys}

    @property
    def export_key(self) -> tuple:
        """Targets with equal keys write the same artifact for a model (same exporter, format, precision and
        calibration), so a comparison exports it once."""
        return (self._export.__qualname__, self.artifact_format, self.precision,
                self.calibration_images if self.needs_calibration else None)

    def artifact_label(self, artifact: Artifact) -> str:
        """How the report names what ran (format and precision)."""
        return f"{artifact.format} {artifact.precision}"

    # --- check ---------------------------------------------------------------------------------------
    def check(self, subject) -> list[Violation]:
        if isinstance(subject, (Artifact, str, Path)):
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
        out_dir = output_folder(out_dir)
        artifact = self._export(model, out_dir, self._calibration(model, calibration))
        artifact.classes, artifact.input_mode = tuple(model.classes), model.input_mode
        artifact.input_shape = (1, *self._input_shape(model.spec))
        artifact.arch = model.spec.to_dict()
        artifact.save_manifest()
        return artifact

    def _calibration(self, model, calibration) -> Calibration | None:
        """What targets that calibrate look at: given (an array of inputs, or a ``Calibration``), else the
        one rule of ``nn.recipes.calibration_inputs``."""
        if not self.needs_calibration:
            return None
        if calibration is None:
            from edgefer.nn.recipes import calibration_inputs

            return calibration_inputs(model, self.calibration_images)
        if isinstance(calibration, Calibration):
            return calibration
        return Calibration(np.asarray(calibration), f"given ({len(calibration)} images)")

    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        path = export_onnx(model, out_dir / "model.onnx")
        return Artifact(self.name, path, "onnx", "fp32", [path.name])

    # --- run -----------------------------------------------------------------------------------------
    def run(self, artifact: Artifact | str | Path, inputs: np.ndarray) -> np.ndarray:
        artifact = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        require_compliant(self.name, self.check_artifact(artifact), artifact.path)
        return run_artifact(artifact, inputs)

    def evaluate(self, artifact: Artifact, inputs: np.ndarray) -> tuple[np.ndarray, Cost]:
        """Logits of the artifact on ``inputs`` and its cost: what a benchmark row needs."""
        return self.run(artifact, inputs), self.cost(artifact)

    # --- cost ----------------------------------------------------------------------------------------
    def cost(self, subject) -> Cost:
        return self.modeled_cost(subject)

    def search_cost(self, model, validation) -> tuple[Cost, dict]:
        """A trained search trial's cost (and figures for the trial table): the modeled cost of its spec."""
        return self.modeled_cost(model.spec), {}

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
        known = citations()
        keys = tuple(k for k in model.citation_keys if k in known)
        return Cost(latency, power, None if power is None else power * latency, "modeled", keys,
                    {**result["terms"], "layers": result["layers"]}, notes)


def export_to_temp(target, model, calibration=None):
    """Export into a temporary folder; returns (artifact, cleanup)."""
    folder = Path(tempfile.mkdtemp(prefix=f"edgefer-{target.name}-"))
    return target.export(model, folder, calibration), lambda: shutil.rmtree(folder, ignore_errors=True)


def export_int8_tflite(target, model, out_dir: Path, calibration: Calibration) -> Artifact:
    """The full-integer int8 TFLite (int8 input and output, PT2E quantisation) of the int8 accelerators: their
    ``_export`` (one function, so that targets sharing it share one export in a comparison)."""
    from edgefer.targets.export import export_tflite_int8

    path = export_tflite_int8(model, out_dir / "model.int8.tflite", calibration.inputs)
    return Artifact(target.name, path, target.artifact_format, "int8", [path.name],
                    notes=[target.accuracy_note, f"calibrated on {calibration.description}"])
