"""``edgefer compare``: the study's comparison, from data to report.

For one dataset, every target gets a model, its artifact and a row: accuracy measured on that
artifact in its real runtime (or simulated, for the spiking network), latency, FPS, power, energy
and PDP, each with its source (``measured`` here or ``modeled`` with citation keys). Loihi appears
twice, with grayscale and with edge-map input, as in the study. The study's headline ratios are
recomputed from our rows. Every stage's result is cached under ``OUT/cache`` keyed by its inputs
(model weights, test images, options, edgefer version), so a re-run redoes only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgefer.errors import EdgeferError

DATASETS = ("ckplus", "fer2013")
EDGE_TARGETS = ("rpi4", "ncs2", "jetson-nano", "coral")
MEASURED_TARGETS = ("host", "gpu")  # listed only where present
LOIHI_INPUTS = ("gray", "edges")
REALTIME_FPS = 28.0  # the study's real-time bar (frames per second)
# The study's headline (arXiv 2403.08792, abstract and conclusion): Loihi vs Coral Edge TPU.
STUDY_HEADLINE = {"loihi_vs_coral_power": 100.0, "loihi_vs_coral_energy": 10.0, "source": "arXiv 2403.08792"}
SHIPPED = {
    "ckplus": {"cnn": "ckplus-cnn", "gray": "ckplus-loihi", "edges": "ckplus-loihi-edges"},
    "fer2013": {"cnn": "fer2013-cnn", "gray": "fer2013-loihi", "edges": "fer2013-loihi-edges"},
}
CACHE_VERSION = 1  # bump when a stage's row format changes
LOIHI_CITATIONS = ("davies2018-table2", "blouw2019-static-power")


@dataclass
class CompareConfig:
    dataset: str = "ckplus"
    timesteps: int = 50
    runs: int = 200  # timed runs of measured targets (>= 200, after warm-up)
    threads: int = 1  # CPU threads of the host target (pinned)
    snn_batch: int = 64
    data_root: Path | None = None
    fresh: bool = False  # ignore cached stages
    # shipped name or checkpoint path per target (coral, loihi-gray, ...) or per role (cnn | gray | edges)
    models: dict = field(default_factory=dict)

    def model_for(self, stage: str, role: str) -> str:
        return self.models.get(stage) or self.models.get(role) or SHIPPED[self.dataset][role]


class StageCache:
    """One JSON file per finished stage, named by a digest of everything the stage depends on."""

    def __init__(self, folder: Path, fresh: bool = False):
        self.folder = folder
        self.fresh = fresh
        self.hits: list[str] = []

    @staticmethod
    def key(**inputs) -> str:
        from edgefer import __version__

        text = json.dumps({**inputs, "cache_version": CACHE_VERSION, "edgefer": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def run(self, stage: str, key: str, compute: Callable[[], dict]) -> dict:
        path = self.folder / f"{stage}-{key}.json"
        if not self.fresh and path.is_file():
            try:
                value = json.loads(path.read_text())
                self.hits.append(stage)
                return value
            except json.JSONDecodeError:
                pass  # a stage interrupted while writing: compute it again
        value = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value, indent=1, default=_json_default) + "\n")
        tmp.replace(path)
        return value


def code_digest(subpackage: str) -> str:
    """The source and data files of one edgefer subpackage: a stage's row changes when they do
    (exporters, runtimes, cost constants, simulator), so they belong in its cache key."""
    root = Path(__file__).resolve().parent.parent / subpackage
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json", ".csv") and p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class _Subject:
    """A model with its held-out test set, loaded once and shared by the stages that use it."""

    name: str
    model: object
    test: object
    inputs: np.ndarray
    labels: np.ndarray
    digest: str
    _torch_accuracy: float | None = None

    @classmethod
    def load(cls, name: str, dataset: str, data_root) -> "_Subject":
        from edgefer.data.preprocess import prepare_input
        from edgefer.nn.evaluate import model_labels
        from edgefer.nn.recipes import heldout_test_set
        from edgefer.nn.zoo import load_model

        model = load_model(name)
        trained_on = model.info.get("data", {}).get("dataset")
        if trained_on != dataset:
            raise EdgeferError(f"model {name!r} was trained on {trained_on or 'an unrecorded dataset'}, "
                               f"not {dataset}: its held-out test set is not this comparison's")
        test = heldout_test_set(model, data_root)
        data_digest = hashlib.sha256(test.images.tobytes() + test.labels.astype(np.int64).tobytes()).hexdigest()[:16]
        return cls(name, model, test, prepare_input(test.images, model.input_mode), model_labels(model, test),
                   f"{model.digest()}-{data_digest}")

    def torch_accuracy(self) -> float:
        """The torch model's accuracy, computed once: every edge target's artifact is compared with it."""
        if self._torch_accuracy is None:
            self._torch_accuracy = float(np.mean(self.model.logits(self.inputs).argmax(axis=1) == self.labels))
        return self._torch_accuracy

    def size(self) -> dict:
        summary = self.model.summary()
        label = self.model.info.get("name") or (Path(self.name).stem if Path(self.name).suffix else self.name)
        return {"model": label,
                "params": summary["params"], "macs": summary["macs"]}


def realtime(fps: float | None) -> bool | None:
    return None if fps is None else fps > REALTIME_FPS


def edge_row(subject: _Subject, target_name: str, artifact_dir: Path, config: CompareConfig) -> dict:
    """One edge target: export, accuracy of the artifact in its runtime, cost (measured or modeled)."""
    from edgefer.targets.bench import bench_target

    torch_accuracy = subject.torch_accuracy()
    bench = bench_target(subject.model, target_name, artifact_dir, subject.inputs, subject.labels, torch_accuracy,
                         config.runs, config.threads)
    row = {"target": target_name, "input": subject.model.input_mode, **subject.size(), "runtime": bench["runtime"],
           "status": bench["status"]}
    if bench["status"] != "ok":
        return {**row, "why": bench["why"], "accuracy": None, "latency_s": None, "fps": None, "power_w": None,
                "energy_j": None, "pdp_j": None, "source": None, "citations": []}
    return {**row, "artifact": f"{bench['format']} {bench['precision']}", "accuracy": bench["accuracy"],
            "accuracy_source": "measured", "n": bench["n"], "reference_accuracy": torch_accuracy,
            "accuracy_drop_points": bench["accuracy_drop_points"],
            "latency_s": bench["latency_s"], "fps": bench["fps"], "power_w": bench["power_w"],
            "energy_j": bench["energy_j"], "pdp_j": bench["pdp_j"], "source": bench["source"],
            "citations": bench["citations"], "realtime": realtime(bench["fps"]),
            "cost_breakdown": bench["cost_breakdown"],
            "notes": [n for n in [bench.get("accuracy_note"), *bench.get("cost_notes", [])] if n]}


def loihi_row(subject: _Subject, input_mode: str, config: CompareConfig) -> dict:
    """Loihi: the converted network simulated with Loihi's integer precision; cost modeled."""
    from edgefer.snn.evaluate import evaluate_snn

    result = evaluate_snn(subject.model, subject.test, config.timesteps, input_mode, batch_size=config.snn_batch,
                          data_root=config.data_root, with_layers=True)
    return {"target": "loihi", "input": input_mode, **subject.size(), "runtime": "edgefer SNN simulator (Loihi integer mode)",
            "status": "ok", "artifact": f"SNN T={config.timesteps} {result['precision']}",
            "accuracy": result["accuracy"], "accuracy_source": "simulated", "n": result["n"],
            "reference_accuracy": result["cnn_accuracy"],
            "accuracy_drop_points": 100 * (result["cnn_accuracy"] - result["accuracy"]),
            "latency_s": result["latency_s"], "fps": result["fps"], "power_w": result["power_w"],
            "energy_j": result["energy_j"], "pdp_j": result["power_w"] * result["latency_s"], "source": "modeled",
            "citations": list(LOIHI_CITATIONS), "realtime": realtime(result["fps"]),
            "dynamic_energy_j": result["dynamic_energy_j"], "static_energy_j": result["static_energy_j"],
            "static_power_w": result["static_power_w"], "spikes_per_image": result["spikes_per_image"],
            "synops_per_image": result["synops_per_image"], "cores": result["cores"], "chips": result["chips"],
            "input_sparsity": result["input_sparsity"], "layers": result["layers"],
            "notes": [f"thresholds calibrated on {result['calibration']}"]}


def headline(rows: list[dict]) -> dict:
    """The study's claims recomputed from our rows: Loihi vs Coral power and energy, real time."""
    by_key = {(r["target"], r["input"]): r for r in rows if r.get("status") == "ok"}
    coral = next((r for (target, _), r in by_key.items() if target == "coral"), None)
    out = {"study": STUDY_HEADLINE, "realtime_fps": REALTIME_FPS, "loihi_vs_coral": {}}
    for mode in LOIHI_INPUTS:
        loihi = by_key.get(("loihi", mode))
        if coral is None or loihi is None or not coral.get("power_w"):
            continue
        out["loihi_vs_coral"][mode] = {
            "power_ratio": coral["power_w"] / loihi["power_w"],
            "energy_ratio": coral["energy_j"] / loihi["energy_j"],
            "energy_ratio_dynamic_only": coral["energy_j"] / loihi["dynamic_energy_j"],
            "power_ratio_dynamic_only": coral["power_w"] / (loihi["dynamic_energy_j"] / loihi["latency_s"]),
            "accuracy_points": 100 * (loihi["accuracy"] - coral["accuracy"]),
        }
    gray, edges = by_key.get(("loihi", "gray")), by_key.get(("loihi", "edges"))
    if gray and edges:
        out["edges_vs_gray"] = {"accuracy_points": 100 * (edges["accuracy"] - gray["accuracy"]),
                                "power_change": edges["power_w"] / gray["power_w"] - 1,
                                "energy_change": edges["energy_j"] / gray["energy_j"] - 1,
                                # a gray-input net can stay silent (an untrained or badly scaled one)
                                "spikes_change": edges["spikes_per_image"] / gray["spikes_per_image"] - 1
                                if gray["spikes_per_image"] else None,
                                "input_sparsity": {"gray": gray["input_sparsity"], "edges": edges["input_sparsity"]}}
    timed = [r for r in by_key.values() if r.get("fps") is not None]
    out["all_realtime"] = bool(timed) and all(r["fps"] > REALTIME_FPS for r in timed)
    out["not_realtime"] = [f"{r['target']}/{r['input']}" for r in timed if r["fps"] <= REALTIME_FPS]
    return out


def _machine() -> dict:
    from edgefer.targets.host import cpu_name

    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run_compare(config: CompareConfig, out: Path, progress: bool = True) -> dict:
    """Run every stage (cached), write results.json / results.csv / summary.json / report.md / report.html."""
    from edgefer.bench.report import write_report
    from edgefer.targets import get_target

    if config.dataset not in DATASETS:
        raise EdgeferError(f"unknown dataset {config.dataset!r}; choose one of {', '.join(DATASETS)}")
    if config.timesteps < 1:
        raise EdgeferError(f"--timesteps must be >= 1, got {config.timesteps}")
    out = Path(out)
    cache = StageCache(out / "cache", config.fresh)
    availability = {name: get_target(name).available() for name in MEASURED_TARGETS}
    present = [name for name, (ok, _) in availability.items() if ok]
    absent = {name: why for name, (ok, why) in availability.items() if not ok}
    stages = [(name, "cnn", name) for name in (*present, *EDGE_TARGETS)]
    stages += [(f"loihi-{mode}", mode, mode) for mode in LOIHI_INPUTS]
    code = {"cnn": code_digest("targets"), "snn": code_digest("snn")}
    subjects: dict[str, _Subject] = {}

    def subject(name: str) -> _Subject:
        if name not in subjects:
            subjects[name] = _Subject.load(name, config.dataset, config.data_root)
        return subjects[name]

    started = time.perf_counter()
    rows = []
    with _progress(progress) as bar:
        task = bar.add_task(f"compare {config.dataset}", total=len(stages))
        for stage, role, what in stages:
            bar.update(task, description=f"{config.dataset}: {stage}")
            current = subject(config.model_for(stage, role))
            if role == "cnn":
                options = {"runs": config.runs, "threads": config.threads} if what in MEASURED_TARGETS else {}
                key = cache.key(stage=stage, subject=current.digest, code=code["cnn"], **options)
                row = cache.run(stage, key, lambda: edge_row(current, what, out / "artifacts", config))
            else:
                key = cache.key(stage=stage, subject=current.digest, code=code["snn"], timesteps=config.timesteps)
                row = cache.run(stage, key, lambda: loihi_row(current, what, config))
            rows.append(row)
            bar.advance(task)
    summary = {
        "dataset": config.dataset,
        "models": {stage: config.model_for(stage, role) for stage, role, _ in stages},
        "timesteps": config.timesteps,
        "headline": headline(rows),
        "absent_targets": absent,
        "cached_stages": cache.hits,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": _machine(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": {k: v for k, v in asdict(config).items() if k != "fresh"},
    }
    summary["files"] = write_report(rows, summary, out)
    return summary


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def searched_models(dataset: str, objective: str = "hierarchical") -> dict:
    """Each target's best checkpoint from its AutoML study (``edgefer search``): the edge targets'
    CNNs and Loihi's grayscale net. The search space has no input mode, so the edge-map Loihi row
    keeps the shipped edge-map net; host and gpu keep the shipped CNN as the measured reference."""
    from edgefer.automl.search import SearchSettings

    models, missing = {}, []
    for target, stage in [(name, name) for name in EDGE_TARGETS] + [("loihi", "loihi-gray")]:
        best = SearchSettings(dataset=dataset, target=target, objective=objective, progress=False).out / "best.safetensors"
        if best.is_file():
            models[stage] = str(best)
        else:
            missing.append((target, best))
    if missing:
        raise EdgeferError("--search needs every target's search result; missing "
                           + "; ".join(f"{target} ({path})" for target, path in missing) + ". Run "
                           + " and ".join(f"edgefer search --target {t} --dataset {dataset} --objective {objective}"
                                          for t, _ in missing))
    return models
