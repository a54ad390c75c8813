"""``edgefer compare``: the study's comparison, from data to report.

For one dataset, every target gets a model, its artifact and a row: accuracy measured on that
artifact in its real runtime (or simulated, for the spiking network), latency, FPS, power, energy
and PDP, each with its source (``measured`` here or ``modeled`` with citation keys). The stages come
from the target registry: every registered target, once per model role it names (Loihi twice, with
grayscale and with edge-map input, as in the study). The study's headline ratios are
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

from edgefer.bench.rows import (REALTIME_FPS, STUDY_ACCELERATOR, STUDY_CHIP, STUDY_HEADLINE, Row, Subject, realtime,
                                target_row)
from edgefer.data.datasets import get_dataset
from edgefer.errors import EdgeferError, output_folder
from edgefer.targets import get_target, target_classes
from edgefer.targets.registry import accepted_options
from edgefer.targets.bundle import load_measurement

CACHE_VERSION = 2  # bump when a stage's row format changes


@dataclass
class CompareConfig:
    dataset: str = "ckplus"
    timesteps: int | None = None  # Loihi rows: None runs each net at the T its export chose (see LoihiTarget)
    runs: int = 200  # timed runs of measured targets (>= 200, after warm-up)
    threads: int = 1  # CPU threads of the host target (pinned)
    snn_batch: int = 64
    data_root: Path | None = None
    fresh: bool = False  # ignore cached stages
    # shipped name or checkpoint path per target (coral, loihi-gray, ...) or per role (cnn | gray | edges)
    models: dict = field(default_factory=dict)
    measured: tuple = ()  # measurement.json files from run_on_device.py: those rows become measured
    constants: Path | None = None  # a user constants file (edgefer targets calibrate) for the modeled devices

    def model_for(self, stage: str, role: str) -> str:
        return self.models.get(stage) or self.models.get(role) or get_dataset(self.dataset).shipped_model(role)


@dataclass(frozen=True)
class Stage:
    """One row of the comparison: a target and the model role it runs (a spiking chip runs two)."""

    name: str  # the target's name, or target-role where the target runs several roles
    target: str
    role: str


def comparison_stages(present_measured) -> list[Stage]:
    """Every registered target's stages, in registry order: measured targets only where present."""
    stages = []
    for cls in target_classes():
        if cls.latency_source == "measured" and cls.name not in present_measured:
            continue
        for role in cls.compare_roles:
            stages.append(Stage(cls.name if len(cls.compare_roles) == 1 else f"{cls.name}-{role}", cls.name, role))
    return stages


@dataclass
class Comparison:
    rows: list[Row]
    summary: dict


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

    def run(self, stage: str, key: str, compute: Callable[[], dict], valid: Callable[[object], bool]) -> dict:
        """The cached value when one is stored and passes ``valid``; else computed (and stored). A corrupt
        entry (a stage interrupted while writing, a hand-edited or damaged file) is computed again."""
        path = self.folder / f"{stage}-{key}.json"
        if not self.fresh and path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                value = None
            if value is not None and valid(value):
                self.hits.append(stage)
                return value
        value = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value, indent=1, default=_json_default) + "\n")
        tmp.replace(path)
        return value


def code_digest(target) -> str:
    """The source and data files a target's rows depend on: the targets package (exporters, runtimes, cost
    model, every device module and constants file) and, for a spiking chip, the simulator package."""
    root = Path(__file__).resolve().parent.parent
    packages = ["targets"] + (["snn"] if target.role == "neuromorphic" else [])
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(p for p in (root / package).rglob("*") if p.suffix in (".py", ".json", ".csv") and p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def headline(rows: list[Row]) -> dict:
    """The study's claims recomputed from our rows: neuromorphic chip vs Coral power and energy, real time."""
    ok = [r for r in rows if r.get("status") == "ok"]
    coral = next((r for r in ok if r.get("target") == STUDY_ACCELERATOR), None)
    out = {"study": STUDY_HEADLINE, "realtime_fps": REALTIME_FPS, "loihi_vs_coral": {}}
    spiking = {r.get("input"): r for r in ok if r.get("target") == STUDY_CHIP}
    for mode, loihi in spiking.items():
        if coral is None or not coral.get("power_w"):
            continue
        out["loihi_vs_coral"][mode] = {
            "sources": {STUDY_CHIP: loihi.get("source"), STUDY_ACCELERATOR: coral.get("source")},
            "power_ratio": coral.get("power_w") / loihi.get("power_w"),
            "energy_ratio": coral.get("energy_j") / loihi.get("energy_j"),
            "energy_ratio_dynamic_only": coral.get("energy_j") / loihi.get("dynamic_energy_j"),
            "power_ratio_dynamic_only": coral.get("power_w") / (loihi.get("dynamic_energy_j") / loihi.get("latency_s")),
            "accuracy_points": 100 * (loihi.get("accuracy") - coral.get("accuracy")),
        }
    gray, edges = spiking.get("gray"), spiking.get("edges")
    if gray and edges:
        out["edges_vs_gray"] = {"accuracy_points": 100 * (edges.get("accuracy") - gray.get("accuracy")),
                                "power_change": edges.get("power_w") / gray.get("power_w") - 1,
                                "energy_change": edges.get("energy_j") / gray.get("energy_j") - 1,
                                # a gray-input net can stay silent (an untrained or badly scaled one)
                                "spikes_change": edges.get("spikes_per_image") / gray.get("spikes_per_image") - 1
                                if gray.get("spikes_per_image") else None,
                                "input_sparsity": {"gray": gray.get("input_sparsity"), "edges": edges.get("input_sparsity")}}
    timed = [r for r in ok if r.get("fps") is not None]
    out["all_realtime"] = bool(timed) and all(r.get("fps") > REALTIME_FPS for r in timed)
    out["not_realtime"] = [f"{r.get('target')}/{r.get('input')}" for r in timed if r.get("fps") <= REALTIME_FPS]
    return out


def _machine() -> dict:
    from edgefer.targets.devices.host import cpu_name

    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run_compare(config: CompareConfig, out: Path, progress: bool = True) -> Comparison:
    """Run every stage (cached), write results.json / results.csv / summary.json / report.md / report.html."""
    from edgefer.targets.costmodel import user_constants

    with user_constants(config.constants):
        return _compare(config, out, progress)


def _compare(config: CompareConfig, out: Path, progress: bool) -> Comparison:
    from edgefer.bench.report import write_report

    get_dataset(config.dataset)  # an unknown dataset fails before any work
    if config.timesteps is not None and config.timesteps < 1:
        raise EdgeferError(f"--timesteps must be >= 1, got {config.timesteps}")
    out = output_folder(out)
    cache = StageCache(output_folder(out / "cache"), config.fresh)
    measured = [cls.name for cls in target_classes() if cls.latency_source == "measured"]
    availability = {name: get_target(name).available() for name in measured}
    present = [name for name, (ok, _) in availability.items() if ok]
    absent = {name: why for name, (ok, why) in availability.items() if not ok}
    stages = comparison_stages(present)
    every = comparison_stages(measured)
    unknown = sorted(set(config.models) - {s.name for s in every} - {s.role for s in every})
    if unknown:
        raise EdgeferError(f"--model {unknown[0]}=...: no such role ({', '.join(sorted({s.role for s in every}))}) "
                           f"or stage ({', '.join(s.name for s in every)})")
    options = {"runs": config.runs, "threads": config.threads, "timesteps": config.timesteps, "batch_size": config.snn_batch}
    constants = hashlib.sha256(Path(config.constants).read_bytes()).hexdigest()[:16] if config.constants else None
    subjects: dict[str, Subject] = {}
    code: dict[str, str] = {}  # per role: the package files are hashed once per run, not per stage

    def subject(name: str) -> Subject:
        if name not in subjects:
            subjects[name] = Subject.load(name, config.dataset, config.data_root)
        return subjects[name]

    started = time.perf_counter()
    rows = []
    digests: dict[str, str] = {}
    with _progress(progress) as bar:
        task = bar.add_task(f"compare {config.dataset}", total=len(stages))
        for stage in stages:
            bar.update(task, description=f"{config.dataset}: {stage.name}")
            current = subject(config.model_for(stage.name, stage.role))
            target = get_target(stage.target, **options)
            if target.role not in code:
                code[target.role] = code_digest(target)
            key = cache.key(stage=stage.name, subject=current.digest, code=code[target.role],
                            # the options its constructor takes (runs, threads, timesteps): changing one reruns only its stages
                            options=accepted_options(type(target), options),
                            **({"constants": constants} if constants and target.role == "edge" else {}))
            row = cache.run(stage.name, key, lambda: target_row(target, current, out / "artifacts").to_dict(),
                            lambda cached: Row.is_valid(cached, stage.target))
            rows.append(Row.from_dict(row))
            digests[stage.target] = current.model_digest
            bar.advance(task)
    for path in config.measured:
        merge_measurement(rows, load_measurement(path), digests)
    summary = {
        "dataset": config.dataset,
        "models": {stage.name: config.model_for(stage.name, stage.role) for stage in stages},
        "timesteps": config.timesteps or "chosen per net",
        "headline": headline(rows),
        "absent_targets": absent,
        "cached_stages": cache.hits,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": _machine(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": {k: v for k, v in asdict(config).items() if k != "fresh"},
        "searches": search_fronts({stage.name: subject(config.model_for(stage.name, stage.role)).model for stage in stages}),
    }
    summary["files"] = write_report(rows, summary, out)
    return Comparison(rows, summary)


FRONT_KEYS = ("trial", "val_accuracy", "snn_accuracy", "latency_s", "power_w", "energy_j", "params", "macs", "cores")


def search_fronts(stage_models: dict[str, object]) -> dict:
    """Per stage whose model is the best trial of an AutoML study (``edgefer search``) whose folder is here:
    how the study ran and its Pareto set, for the report (with the study's plot)."""
    fronts = {}
    for stage, model in stage_models.items():
        folder = (model.info.get("search") or {}).get("folder")
        if not folder or not (Path(folder) / "summary.json").is_file():
            continue
        path, plot = Path(folder) / "summary.json", Path(folder) / "pareto.png"
        try:
            study = json.loads(path.read_text(encoding="utf-8"))
            fronts[stage] = {"folder": folder, "study": study["study"], "command": study["command"],
                             "finished_trials": study["finished_trials"], "trial_states": study["trial_states"],
                             "reference": study["reference"], "best_trial": study["best"]["trial"],
                             "front": [{k: point.get(k) for k in FRONT_KEYS} for point in study["pareto"]],
                             "plot": str(plot) if plot.is_file() else None}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EdgeferError(f"not a search summary written by edgefer search ({type(exc).__name__}: {exc})", path) from None
    return fronts


def merge_measurement(rows: list[Row], measurement: dict, digests: dict[str, str]) -> None:
    """Make a target's row measured with a run_on_device.py result: latency, FPS, power and energy from the
    device, the modeled figures kept beside them with the model's error on this row."""
    path, target = measurement["path"], measurement["target"]
    row = next((r for r in rows if r.target == target and r.ok), None)
    if row is None:
        raise EdgeferError(f"measures {target}, which has no row in this comparison", path)
    if digests.get(target) != measurement["model_digest"]:
        raise EdgeferError(f"measures {measurement.get('model')!r} on {target}, not the {row.model!r} this comparison "
                           "runs there (model digest differs): export a new bundle of this model", path)
    latency = measurement["latency_s"]["median"]
    power = measurement["power"].get("active_w")
    modeled = {"latency_s": row.latency_s, "power_w": row.power_w, "energy_j": row.energy_j, "source": row.source,
               "citations": row.citations}
    row.latency_s, row.fps = latency, 1.0 / latency
    row.power_w = power
    row.energy_j = row.pdp_j = None if power is None else power * latency
    row.source, row.citations, row.realtime = "measured", ["this-project"], realtime(row.fps)
    device = measurement.get("device") or {}
    row.figures.update({
        "modeled": modeled,
        "model_error": {"latency": modeled["latency_s"] / latency - 1,
                        "power": None if power is None or not modeled["power_w"] else modeled["power_w"] / power - 1},
        "measured_on": (device.get("model") or device.get("cpu") or device.get("machine"))
                       + (" (CPU only, no accelerator)" if measurement.get("cpu_only") else ""),
        "power_source": measurement["power"].get("source"),
        "device_accuracy": {"accuracy": measurement["accuracy"], "n": measurement["n"]},
        "measurement": path,
    })
    row.notes.append(f"latency measured on {row.figures['measured_on']} with {measurement['runtime'].get('runtime')} "
                     f"({measurement['runtime'].get('delegate') or 'CPU kernels'}); "
                     + (f"power: {row.figures['power_source']}" if power is not None else "power not measured")
                     + f"; the cost model said {1e3 * modeled['latency_s']:.3f} ms")


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def searched_models(dataset: str, objective: str = "hierarchical") -> dict:
    """Each searchable edge or neuromorphic target's best checkpoint from its AutoML study (``edgefer
    search``), for its first compare role (a CNN; a spiking chip's grayscale net). The search space has no
    input mode, so other roles (edge-map input) keep the shipped net; measured host targets keep the shipped
    CNN as the reference."""
    from edgefer.automl.study import SearchSettings

    models, missing = {}, []
    for cls in target_classes(searchable=True):
        if cls.role == "host":
            continue
        role = cls.compare_roles[0]
        stage = cls.name if len(cls.compare_roles) == 1 else f"{cls.name}-{role}"
        best = SearchSettings(dataset=dataset, target=cls.name, objective=objective, progress=False).out / "best.safetensors"
        if best.is_file():
            models[stage] = str(best)
        else:
            missing.append((cls.name, best))
    if missing:
        raise EdgeferError("--search needs every target's search result; missing "
                           + "; ".join(f"{target} ({path})" for target, path in missing) + ". Run "
                           + " and ".join(f"edgefer search --target {t} --dataset {dataset} --objective {objective}"
                                          for t, _ in missing))
    return models
