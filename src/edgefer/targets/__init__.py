"""Edge AI targets behind one protocol (see base.Target): check, export, run, cost.

    from edgefer.targets import get_target
    coral = get_target("coral")
    violations = coral.check(model.spec)
    artifact = coral.export(model, "out/coral")
    logits = coral.run(artifact, inputs)
    cost = coral.cost(artifact)          # Cost(latency_s, power_w, energy_j, source="modeled", ...)
"""

from __future__ import annotations

from edgefer.errors import EdgeferError
from edgefer.targets.base import Artifact, Cost, Target, Violation

TARGET_NAMES = ("host", "gpu", "rpi4", "ncs2", "jetson-nano", "coral")


def get_target(name: str, **options) -> Target:
    """A target by name; options (threads, runs, ...) go to the measured targets."""
    if name == "host":
        from edgefer.targets.host import HostTarget as cls
    elif name == "gpu":
        from edgefer.targets.gpu import GpuTarget as cls
    elif name == "rpi4":
        from edgefer.targets.rpi4 import Rpi4Target as cls
    elif name == "ncs2":
        from edgefer.targets.ncs2 import Ncs2Target as cls
    elif name == "jetson-nano":
        from edgefer.targets.jetson_nano import JetsonNanoTarget as cls
    elif name == "coral":
        from edgefer.targets.coral import CoralTarget as cls
    else:
        raise EdgeferError(f"unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)}")
    return cls(**options) if options and cls.latency_source == "measured" else cls()


def all_targets(**options) -> list[Target]:
    return [get_target(n, **options) for n in TARGET_NAMES]


__all__ = ["Artifact", "Cost", "Target", "Violation", "TARGET_NAMES", "get_target", "all_targets"]
