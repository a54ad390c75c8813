"""Targets behind one protocol (see base.Target), found by name in the registry (see registry).

    from edgefer.targets import get_target
    coral = get_target("coral")
    violations = coral.check(model.spec)
    artifact = coral.export(model, "out/coral")
    logits = coral.run(artifact, inputs)
    cost = coral.cost(artifact)          # Cost(latency_s, power_w, energy_j, source="modeled", ...)
    logits, cost = coral.evaluate(artifact, inputs)   # both at once (one simulation on Loihi)
"""

from __future__ import annotations

from edgefer.targets.base import Artifact, Cost, Target, Violation
from edgefer.targets.registry import (SearchHints, all_targets, get_target, register_target, target_class,
                                      target_classes, target_names)

__all__ = ["Artifact", "Cost", "Target", "Violation", "SearchHints", "register_target", "get_target", "all_targets",
           "target_class", "target_classes", "target_names"]
