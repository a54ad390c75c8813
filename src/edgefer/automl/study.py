"""One Optuna study per (dataset, target, objective): its settings, storage, data and trial counts.

What both the search loop (``search``) and its outputs (``report``) need, so neither imports the other's
internals.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefer.automl.space import Budget
from edgefer.data.datasets import get_dataset
from edgefer.errors import EdgeferError, output_folder
from edgefer.nn.recipes import RECIPES, load_recipe_data
from edgefer.nn.train import TrainConfig

OBJECTIVES = ("hierarchical", "pareto")
MEDIAN_STARTUP_TRIALS = 5  # completed trials before the median rule prunes anything
MEDIAN_WARMUP_EPOCHS = 3  # epochs a trial always gets before it can be pruned
TPE_STARTUP_TRIALS = 8  # random trials before TPE models the space
DEFAULT_HEARTBEAT_S = 10


@dataclass
class SearchSettings:
    dataset: str
    target: str
    trials: int = 1  # finished trials the study should have
    objective: str = "hierarchical"
    storage: str | None = None  # Optuna RDB URL; default: SQLite in ``out``
    out: Path | None = None  # default runs/search/<dataset>-<target>-<objective>
    timeout_s: float | None = None  # no new trial starts after this many seconds
    threads: int = 1
    budget: Budget = field(default_factory=Budget)
    tolerance: float = 0.01
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    subset: int | None = None  # train on the first N training images only (smoke tests)
    data_root: Path | None = None
    progress: bool = True
    constants: Path | None = None  # a user constants file (edgefer targets calibrate) for the target's cost model
    # warnings the target's search hints reject that this search accepts (Loihi: "multi-chip", nets priced
    # with every chip's static power)
    allowed_warnings: tuple[str, ...] = ()

    def __post_init__(self):
        get_dataset(self.dataset)  # an unknown dataset is a clear error
        target = search_target(self.target)  # so is a target that cannot be searched
        if self.objective not in OBJECTIVES:
            raise EdgeferError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.trials < 1:
            raise EdgeferError(f"--trials must be at least 1, got {self.trials}")
        if not 1 <= self.budget.min_epochs <= self.budget.max_epochs:
            raise EdgeferError(f"epochs budget must satisfy 1 <= min <= max, got {self.budget.min_epochs}..{self.budget.max_epochs}")
        if not 0 < self.tolerance < 1:
            raise EdgeferError(f"--tolerance must be in (0, 1), got {self.tolerance}")
        if self.threads < 1 or self.heartbeat_s < 1:
            raise EdgeferError("--threads and --heartbeat must be at least 1")
        rejected = target.search.rejected_warnings
        unknown = sorted(set(self.allowed_warnings) - set(rejected))
        if unknown:
            raise EdgeferError(f"--allow {unknown[0]}: not a warning that rules a spec out of a {self.target} search "
                               f"({', '.join(rejected) or 'it has none'})")
        self.allowed_warnings = tuple(sorted(set(self.allowed_warnings)))
        if self.subset is not None and self.subset < 8:
            raise EdgeferError(f"--subset must keep at least 8 training images, got {self.subset}")
        self.out = Path(self.out) if self.out else Path("runs/search") / self.study_name

    @property
    def study_name(self) -> str:
        return f"{self.dataset}-{self.target}-{self.objective}"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"

    def command(self) -> str:
        """The ``edgefer search`` command line that runs (or resumes) this study."""
        parts = [f"edgefer search --target {self.target} --dataset {self.dataset} --trials {self.trials} "
                 f"--objective {self.objective}"]
        if (self.budget.min_epochs, self.budget.max_epochs) != (Budget().min_epochs, Budget().max_epochs):
            parts.append(f"--min-epochs {self.budget.min_epochs} --max-epochs {self.budget.max_epochs}")
        if self.subset is not None:
            parts.append(f"--subset {self.subset}")
        parts += [f"--allow {rule}" for rule in self.allowed_warnings]
        return " ".join(parts)

    def fingerprint(self) -> dict:
        """What must not change between the workers and reruns of one study."""
        return {"dataset": self.dataset, "target": self.target, "objective": self.objective,
                "min_epochs": self.budget.min_epochs, "max_epochs": self.budget.max_epochs,
                "tolerance": self.tolerance, "subset": self.subset,
                **({"allowed_warnings": list(self.allowed_warnings)} if self.allowed_warnings else {}),
                "split": RECIPES[get_dataset(self.dataset).search_recipe].split.to_dict(),
                "base_train_config": base_train_config(self.dataset).to_dict(),
                **({"constants": hashlib.sha256(Path(self.constants).read_bytes()).hexdigest()[:16]}
                   if self.constants else {})}


def base_train_config(dataset: str) -> TrainConfig:
    """What a trial does not search (augmentation, weight decay, label smoothing, schedule, seed):
    the reference recipe's settings, e.g. CK+48's mild jitter (see ``RECIPES["ckplus-cnn"]``)."""
    return RECIPES[get_dataset(dataset).search_recipe].config


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def safe_url(url: str) -> str:
    """A storage URL fit to print: the password (``user:secret@``) replaced by ``***``."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def _redacted(text: str, url: str) -> str:
    """``text`` without the URL's password, wherever a driver's message repeats it."""
    match = re.search(r"://[^/:@]*:([^/@]*)@", url)
    return text.replace(match.group(1), "***") if match and match.group(1) else text


def open_storage(url: str, heartbeat_s: int = DEFAULT_HEARTBEAT_S):
    optuna = _optuna()
    given = url  # what messages show (redacted): the user's spelling, not the driver's
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the pinned driver is psycopg2.
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        output_folder(Path(url[len("sqlite:///"):]).parent)
    try:
        with warnings.catch_warnings():
            # The heartbeat is what fails a killed worker's trial; Optuna still labels it experimental.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                                              engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL or server
        detail = _redacted(str(exc).splitlines()[0] if str(exc) else "", url)
        raise EdgeferError(f"cannot open study storage {safe_url(given)!r} ({type(exc).__name__}: {detail})") from None


def _as_stored(value):
    """A JSON-able value as the study's storage gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def open_study(settings: SearchSettings, create: bool = True):
    """The study of these settings; ``create`` makes it when missing, else a missing one is an error."""
    optuna = _optuna()
    storage = open_storage(settings.storage_url, settings.heartbeat_s)
    if settings.objective == "hierarchical":
        directions = ["minimize"]
        pruner = optuna.pruners.MedianPruner(MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS)
    else:
        directions = ["maximize", "minimize", "minimize"]
        pruner = optuna.pruners.NopPruner()
    # constant_liar: concurrent workers see each other's running trials and spread out.
    sampler = optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True, constant_liar=True)
    if not create:
        try:
            return optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise EdgeferError(f"no study {settings.study_name!r} in {safe_url(settings.storage_url)}") from None
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=directions, load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many types (read-only file, lost server, ...)
        detail = _redacted(str(exc).splitlines()[0] if str(exc) else "", settings.storage_url)
        raise EdgeferError(f"cannot open study {settings.study_name!r} in {safe_url(settings.storage_url)} "
                           f"({type(exc).__name__}: {detail})") from None
    recorded = study.user_attrs.get("settings")
    current = _as_stored(settings.fingerprint())
    if recorded is None:
        study.set_user_attr("settings", current)
        return study
    if "base_train_config" in recorded:
        # A training option added since the study started left its trials at the option's default.
        defaults = _as_stored(TrainConfig().to_dict())
        recorded = {**recorded, "base_train_config": {**defaults, **recorded["base_train_config"]}}
    if recorded != current:
        changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
        raise EdgeferError(f"study {settings.study_name!r} was started with other settings ({', '.join(changed)}): "
                           "rerun with the same options or use another --out / --storage")
    return study


@dataclass
class SearchData:
    train: object
    validation: object
    test: object
    recipe: str


def load_search_data(settings: SearchSettings) -> SearchData:
    """The reference recipe's split (CK+48: the study's 75/10/15, seed 123): search on its
    validation part, report the best on its test part."""
    name = get_dataset(settings.dataset).search_recipe
    train, validation, test = load_recipe_data(RECIPES[name], settings.data_root)
    if settings.subset is not None:
        train = train.subset(np.arange(min(settings.subset, len(train))))
    return SearchData(train, validation, test, name)


def model_card_base(settings: SearchSettings, data: SearchData) -> dict:
    """The part of a searched model's card that says what data it saw (the SNN path rebuilds its
    calibration images from it)."""
    return {"data": {"dataset": settings.dataset, "train": len(data.train), "validation": len(data.validation),
                     "test": len(data.test), "classes": list(data.train.classes)},
            "split": RECIPES[data.recipe].split.to_dict(), "input": "gray"}


def trial_counts(study) -> tuple[int, int]:
    """(finished, running): finished trials trained to an end (complete or pruned by the pruner);
    infeasible specs and failed (killed) trials do not count towards ``--trials``."""
    from optuna.trial import TrialState

    finished = running = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        if t.state == TrialState.RUNNING:
            running += 1
        elif "infeasible" not in t.user_attrs:
            finished += 1
    return finished, running


def finished_count(study) -> int:
    return trial_counts(study)[0]


def fail_stale_trials(study) -> None:
    """Mark trials of killed workers (no heartbeat for the grace period) FAIL."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def search_target(name: str):
    """A registered target that can be searched (its class carries ``search`` hints)."""
    from edgefer.targets import get_target, target_names

    target = get_target(name)
    if target.search is None:
        raise EdgeferError(f"{name} cannot be searched: {target.not_searchable}; choose one of "
                           f"{', '.join(target_names(searchable=True))}")
    return target


def rejecting_violations(target, spec, allowed: tuple[str, ...] = ()) -> list:
    """What rules a spec out of a search: the target's errors, and its warnings the search hints name
    (less those the search ``allowed``)."""
    found = target.check(spec)
    return [v for v in found if v.severity == "error" or (v.rule in target.search.rejected_warnings
                                                          and v.rule not in allowed)]
