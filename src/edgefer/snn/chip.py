"""A neuromorphic chip's constants as one object passed to the mapper and the cost model.

The values come from a target's constants file (Loihi 1: ``targets/devices/loihi.json``, Davies et
al. 2018 Table 2 and Blouw et al. 2019); another chip is another file with the same groups
(``energy_j``, ``time_s``, ``limits``, ``layout``, ``static_power_w``, ``host_io_s_per_timestep``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefer.errors import EdgeferError

GROUPS = ("energy_j", "time_s", "limits", "layout", "static_power_w", "host_io_s_per_timestep")


@dataclass(frozen=True)
class Chip:
    name: str
    data: dict = field(repr=False)  # the constants file: every value with its source

    def __post_init__(self):
        missing = [g for g in GROUPS if g not in self.data]
        if missing:
            raise EdgeferError(f"chip {self.name!r}: constants file lacks {', '.join(missing)}")

    def value(self, group: str, key: str | None = None):
        entry = self.data[group] if key is None else self.data[group][key]
        return entry["value"]

    def values(self, group: str) -> dict:
        return {key: entry["value"] for key, entry in self.data[group].items()}

    @property
    def about(self) -> str:
        return self.data.get("_about", self.name)

    @property
    def citations(self) -> tuple[str, ...]:
        return tuple(self.data.get("cost_citations", ()))


def default_chip() -> Chip:
    """Loihi 1, the study's chip (the ``loihi`` target's constants)."""
    from edgefer.targets import get_target

    return get_target("loihi").chip
