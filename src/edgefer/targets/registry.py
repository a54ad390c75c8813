"""The target registry: every device edgefer knows is one class registered here.

A target is one module with one decorated class (and, for a modeled device, one constants file
beside it), as timm registers a model::

    @register_target
    class MyBoardTarget(BaseTarget):
        name = "my-board"
        role = "edge"
        constants = "my_board.json"

The built-in devices live in ``edgefer.targets.devices`` and are found by scanning that package;
third-party packages register theirs through the ``edgefer.targets`` entry-point group (each
entry point names a module or a class; importing it registers the target). Everything that lists
targets (``edgefer targets``, compare, search, live, the CLI's choices) asks this registry.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from functools import lru_cache

from edgefer.errors import EdgeferError
from edgefer.nn.spec import DOWNSAMPLING

ENTRY_POINT_GROUP = "edgefer.targets"
# host: the machine edgefer runs on (measured); edge: an edge AI device (its artifact's accuracy is
# measured here, its latency modeled unless a real device measures it); neuromorphic: a spiking chip
# (the converted network is simulated, its cost modeled).
ROLES = ("host", "edge", "neuromorphic")

_CLASSES: dict[str, type] = {}


@dataclass(frozen=True)
class SearchHints:
    """What a hardware-aware search needs to know about a target beyond ``check``: the downsampling
    layers and bias its space may propose, and the warning rules that rule a spec out (e.g. Edge TPU
    ops that fall back to the CPU)."""

    downsampling: tuple[str, ...] = DOWNSAMPLING
    bias_allowed: bool = True
    rejected_warnings: tuple[str, ...] = ()


def register_target(cls: type) -> type:
    """Class decorator: add a target class to the registry under its ``name``."""
    for attribute in ("name", "label", "runtime", "role"):
        if not getattr(cls, attribute, ""):
            raise EdgeferError(f"target class {cls.__qualname__} does not set {attribute!r}")
    if cls.role not in ROLES:
        raise EdgeferError(f"target {cls.name!r}: role must be one of {', '.join(ROLES)}, got {cls.role!r}")
    known = _CLASSES.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise EdgeferError(f"two targets are named {cls.name!r}: {known.__module__}.{known.__qualname__} and "
                           f"{cls.__module__}.{cls.__qualname__}")
    _CLASSES[cls.name] = cls
    return cls


def plugin_entry_points() -> list:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


@lru_cache(maxsize=None)
def discover() -> None:
    """Import the built-in device modules, then every ``edgefer.targets`` entry point (once)."""
    from edgefer.targets import devices

    for info in pkgutil.iter_modules(devices.__path__):
        importlib.import_module(f"{devices.__name__}.{info.name}")
    for entry in plugin_entry_points():
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-in targets down with it
            raise EdgeferError(f"target plugin {entry.name!r} ({entry.value}) failed to load: {exc}") from None
        if inspect.isclass(loaded) and loaded.__name__ not in {c.__name__ for c in _CLASSES.values()}:
            register_target(loaded)


def target_classes(role: str | None = None, searchable: bool | None = None) -> list[type]:
    """Registered target classes in display order (``order``, then name)."""
    discover()
    classes = sorted(_CLASSES.values(), key=lambda c: (c.order, c.name))
    if role is not None:
        classes = [c for c in classes if c.role == role]
    if searchable is not None:
        classes = [c for c in classes if (c.search is not None) == searchable]
    return classes


def target_names(role: str | None = None, searchable: bool | None = None) -> tuple[str, ...]:
    return tuple(c.name for c in target_classes(role, searchable))


def target_class(name: str) -> type:
    discover()
    if name not in _CLASSES:
        raise EdgeferError(f"unknown target {name!r}; choose one of {', '.join(target_names())}")
    return _CLASSES[name]


def accepted_options(cls: type, options: dict) -> dict:
    """The ``options`` a target class's constructor takes (sorted by name)."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in sorted(options.items()) if k in accepted}


def get_target(name: str, **options):
    """A target by name. ``options`` (threads, runs, timesteps, ...) go to the targets whose
    constructor takes them; the others ignore them."""
    cls = target_class(name)
    return cls(**accepted_options(cls, options))


def all_targets(**options) -> list:
    return [get_target(name, **options) for name in target_names()]
