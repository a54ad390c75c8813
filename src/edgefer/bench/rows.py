"""One benchmark row per (target, model): the artifact's accuracy in its runtime (or simulated, on a
spiking chip) and its cost, with their sources. ``edgefer bench`` and ``edgefer compare`` both make
their rows here, from any registered target, through the Target protocol only."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from edgefer.data.dataset import Calibration
from edgefer.errors import EdgeferError
from edgefer.targets.base import errors_of

# The study's real-time bar: a target is real time above 28 frames per second (arXiv 2403.08792).
REALTIME_FPS = 28.0
# The study's headline (arXiv 2403.08792, abstract and conclusion): Loihi vs Coral Edge TPU, the two
# targets its ratios compare.
STUDY_HEADLINE = {"loihi_vs_coral_power": 100.0, "loihi_vs_coral_energy": 10.0, "source": "arXiv 2403.08792"}
STUDY_CHIP, STUDY_ACCELERATOR = "loihi", "coral"


def realtime(fps: float | None) -> bool | None:
    return None if fps is None else fps > REALTIME_FPS


@dataclass
class Subject:
    """A model with its held-out test set (and, when a target asks, its calibration images), loaded
    once and shared by every row that uses it."""

    name: str
    model: object
    test: object
    inputs: np.ndarray
    labels: np.ndarray
    model_digest: str  # the network (FerModel.digest)
    data_digest: str  # the held-out images and labels
    data_root: Path | None = None
    _torch_accuracy: float | None = None
    _splits: tuple | None = None  # (train, validation), read on first use
    exports: dict = field(default_factory=dict)  # export_key -> the artifact made for it (shared by equal exports)

    @classmethod
    def load(cls, name: str, dataset: str | None = None, data_root=None) -> "Subject":
        """A shipped model or checkpoint; ``dataset``, when given, must be the one it was trained on."""
        from edgefer.data.preprocess import prepare_input
        from edgefer.nn.evaluate import model_labels
        from edgefer.nn.recipes import heldout_test_set
        from edgefer.nn.zoo import load_model

        model = load_model(name)
        trained_on = model.info.get("data", {}).get("dataset")
        if dataset is not None and trained_on != dataset:
            raise EdgeferError(f"model {name!r} was trained on {trained_on or 'an unrecorded dataset'}, "
                               f"not {dataset}: its held-out test set is not this comparison's")
        test = heldout_test_set(model, data_root)
        data_digest = hashlib.sha256(test.images.tobytes() + test.labels.astype(np.int64).tobytes()).hexdigest()[:16]
        return cls(name, model, test, prepare_input(test.images, model.input_mode), model_labels(model, test),
                   model.digest(), data_digest, data_root)

    @property
    def digest(self) -> str:
        """What a row of this subject depends on: the network and its test images."""
        return f"{self.model_digest}-{self.data_digest}"

    def torch_accuracy(self) -> float:
        """The torch model's accuracy, computed once: every target's artifact is compared with it."""
        if self._torch_accuracy is None:
            self._torch_accuracy = float(np.mean(self.model.logits(self.inputs).argmax(axis=1) == self.labels))
        return self._torch_accuracy

    def calibration(self, images: int) -> Calibration:
        """The model's calibration inputs and validation images (``nn.recipes.calibration_inputs``), its
        splits read once for every target that calibrates."""
        from edgefer.nn.recipes import calibration_inputs, recorded_splits

        if self._splits is None:
            self._splits = recorded_splits(self.model, self.data_root)[:2]
        return calibration_inputs(self.model, images, splits=self._splits)

    def size(self) -> dict:
        summary = self.model.summary()
        label = self.model.info.get("name") or (Path(self.name).stem if Path(self.name).suffix else self.name)
        return {"model": label, "params": summary["params"], "macs": summary["macs"]}


@dataclass
class Row:
    """One target's result for one model: what results.json, results.csv, the report and ``edgefer bench``
    show. ``figures`` holds target-specific columns (a spiking chip's spikes, cores, ...) and is
    flattened into the row's dict."""

    target: str
    input: str
    model: str
    params: int
    macs: int
    runtime: str
    status: str  # ok | skipped
    why: str | None = None
    artifact: str | None = None
    accuracy: float | None = None
    accuracy_source: str | None = None  # measured | simulated
    n: int | None = None
    reference_accuracy: float | None = None  # the torch model on the same images
    accuracy_drop_points: float | None = None
    latency_s: float | None = None
    fps: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    pdp_j: float | None = None
    source: str | None = None  # measured | modeled
    citations: list = field(default_factory=list)
    realtime: bool | None = None
    cost_breakdown: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    export_s: float | None = None
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        figures = data.pop("figures")
        return {**data, **figures}

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        known = {f.name for f in fields(cls)} - {"figures"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   figures={k: v for k, v in data.items() if k not in known})

    @classmethod
    def is_valid(cls, data, target: str) -> bool:
        """Whether stored row data (a cache entry) is a complete row of ``target``: the right keys with the
        right types, so that the report can use it as it is."""
        if not isinstance(data, dict) or data.get("target") != target or data.get("status") not in ("ok", "skipped"):
            return False
        if not all(isinstance(data.get(k), str) for k in ("input", "model", "runtime")):
            return False
        numbers = ("accuracy", "latency_s", "fps", "power_w", "energy_j", "pdp_j", "reference_accuracy",
                   "accuracy_drop_points")
        values = [data.get(k) for k in numbers]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values):
            return False
        if data["status"] == "ok" and any(data.get(k) is None for k in ("accuracy", "latency_s", "fps", "source")):
            return False
        return isinstance(data.get("citations", []), list) and isinstance(data.get("notes", []), list)

    def get(self, key: str, default=None):
        """A field or a figure by name (the report reads rows of every target alike)."""
        if key in self.figures:
            return self.figures[key]
        return getattr(self, key, default)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def target_row(target, subject: Subject, out_dir: str | Path) -> Row:
    """Check, export, evaluate (logits and cost from one run) and compare with the torch model."""
    row = Row(target.name, subject.model.input_mode, **subject.size(), runtime=target.runtime, status="skipped")
    ok, why = target.available()
    violations = target.check(subject.model.spec)
    row.violations = [str(v) for v in violations]
    if not ok or errors_of(violations):
        row.why = why if not ok else "; ".join(row.violations)
        return row
    started = time.perf_counter()
    exported = subject.exports.get(target.export_key)
    if exported is not None:
        artifact = exported.copy_for(target, Path(out_dir) / target.name)
    else:
        calibration = subject.calibration(target.calibration_images) if target.needs_calibration else None
        artifact = subject.exports[target.export_key] = target.export(subject.model, Path(out_dir) / target.name,
                                                                      calibration)
    row.export_s = time.perf_counter() - started
    logits, cost = target.evaluate(artifact, subject.inputs)
    reference = subject.torch_accuracy()
    row.status, row.artifact = "ok", target.artifact_label(artifact)
    row.accuracy = float(np.mean(logits.argmax(axis=1) == subject.labels))
    row.accuracy_source, row.n = target.accuracy_source, int(len(subject.labels))
    row.reference_accuracy, row.accuracy_drop_points = reference, 100 * (reference - row.accuracy)
    row.latency_s, row.fps, row.power_w, row.energy_j, row.pdp_j = cost.latency_s, cost.fps, cost.power_w, cost.energy_j, cost.pdp_j
    row.source, row.citations, row.realtime = cost.source, list(cost.citations), realtime(cost.fps)
    row.cost_breakdown = {k: v for k, v in cost.breakdown.items() if k != "layers"}
    row.notes = [n for n in [target.accuracy_note, *cost.notes] if n]
    row.figures = dict(cost.figures)
    return row


def bench_model(model_name: str, targets: str | list[str], out_dir: str | Path, runs: int = 200, threads: int = 1,
                data_root=None) -> dict:
    """``edgefer bench``: one row per target (``all``: every registered target) on the model's held-out set."""
    from edgefer.targets import get_target, target_class, target_names

    names = list(target_names()) if targets == "all" else ([targets] if isinstance(targets, str) else list(targets))
    for name in names:
        target_class(name)  # unknown names fail before any work
    subject = Subject.load(model_name, data_root=data_root)
    rows = [target_row(get_target(name, runs=runs, threads=threads), subject, out_dir) for name in names]
    return {"model": model_name, "n_test": int(len(subject.labels)), "torch_accuracy": subject.torch_accuracy(),
            "rows": rows}
