"""What a search asks of a device: which specs it can run (checked before any training) and what a
trained model costs there.

The edge targets (``edgefer.targets``) answer both through their own ``check`` and ``cost``. Loihi has
no Target (it runs no exported artifact): its rules come from the spiking converter and the core
partitioner, and its cost from simulating the converted network (``edgefer.snn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.nn.spec import DOWNSAMPLING, ArchSpec
from edgefer.targets import Cost, Violation, get_target
from edgefer.targets.base import errors_of

SEARCH_TARGETS = ("host", "rpi4", "ncs2", "jetson-nano", "coral", "loihi")
# Edge TPU warnings that mean part of the graph leaves the int8 accelerator (CPU fallback, weights
# streamed over USB): a spec that triggers them is not "int8-friendly" and is not searched.
CORAL_REJECTED_WARNINGS = ("edgetpu-op", "cpu-fallback", "sram")
# One Loihi 1 chip (Davies et al. 2018: 128 cores per chip): a searched net must fit on one chip,
# as the study's did; more chips would add inter-chip traffic the cost model does not cover.
LOIHI_CORE_BUDGET = 128
# Images simulated per trial for Loihi's cost, and timesteps per image (the study's 50 x 1 ms).
LOIHI_COST_IMAGES = 64
LOIHI_TIMESTEPS = 50


@dataclass
class Measured:
    """A trained model's cost on a target, plus target-specific figures for the trial table."""

    cost: Cost
    extra: dict = field(default_factory=dict)


class EdgeSearchTarget:
    """An edge target from ``edgefer.targets``: its errors (and, for Coral, its off-accelerator
    warnings) reject a spec; its analytical cost model prices it."""

    def __init__(self, name: str):
        self.name = name
        self.target = get_target(name)
        self.downsampling = DOWNSAMPLING
        self.bias_allowed = True
        self.rejected_warnings = CORAL_REJECTED_WARNINGS if name == "coral" else ()

    def violations(self, spec: ArchSpec) -> list[Violation]:
        found = self.target.check(spec)
        return errors_of(found) + [v for v in found if v.severity == "warning" and v.rule in self.rejected_warnings]

    def cost(self, model, validation) -> Measured:
        return Measured(self.target.cost(model.spec))


class LoihiSearchTarget:
    """Intel Loihi 1 through edgefer's spiking path: ReLU CNNs without bias or max-pool, converted
    to integrate-and-fire neurons, partitioned within one chip's cores."""

    name = "loihi"

    def __init__(self):
        self.core_budget = LOIHI_CORE_BUDGET
        self.cost_images = LOIHI_COST_IMAGES
        self.timesteps = LOIHI_TIMESTEPS
        # Max-pooling has no rate-coded equivalent; the study's net has no bias (batch-norm still
        # folds into the convolution before it, as a per-neuron bias current).
        self.downsampling = ("avgpool", "stride2")
        self.bias_allowed = False

    def violations(self, spec: ArchSpec) -> list[Violation]:
        import torch

        from edgefer.nn.model import FerModel
        from edgefer.snn.convert import convert
        from edgefer.snn.loihi import partition

        problems = []
        if spec.bias:
            problems.append(Violation("no-bias", "the Loihi net has no bias terms"))
        if spec.downsample == "maxpool":
            problems.append(Violation("no-maxpool", "max-pooling has no rate-coded spiking equivalent"))
        if problems:
            return problems
        # The partition depends on layer shapes only: an untrained copy, calibrated on random
        # images, gives the same cores as the trained net.
        untrained = FerModel(spec, spec.build(), tuple(f"class{i}" for i in range(spec.num_classes)))
        calibration = torch.rand((4, spec.in_channels, spec.input_size, spec.input_size), generator=torch.Generator().manual_seed(0))
        try:
            cores = len(partition(convert(untrained, calibration)))
        except EdgeferError as exc:
            return [Violation("loihi-mapping", str(exc))]
        if cores > self.core_budget:
            return [Violation("cores", f"{cores} cores exceed the budget of {self.core_budget} (one Loihi chip)")]
        return []

    def cost(self, model, validation) -> Measured:
        """Simulate the converted net on the first ``cost_images`` validation images (T timesteps):
        modeled energy and latency from the recorded spikes and synaptic operations."""
        from edgefer.snn.evaluate import evaluate_snn

        subset = validation.subset(np.arange(min(self.cost_images, len(validation))))
        result = evaluate_snn(model, subset, timesteps=self.timesteps, with_layers=False)
        cost = Cost(result["latency_s"], result["power_w"], result["energy_j"], "modeled",
                    ("Davies et al. 2018, Table 2 (src/edgefer/snn/loihi_constants.json)", "Blouw et al. 2019: static power"),
                    {"dynamic_energy_j": result["dynamic_energy_j"], "static_energy_j": result["static_energy_j"]},
                    [f"simulated SNN on {result['n']} validation images, T={self.timesteps}"])
        return Measured(cost, {"snn_accuracy": result["accuracy"], "snn_n": result["n"], "cores": result["cores"],
                               "spikes_per_image": result["spikes_per_image"]})


def search_target(name: str):
    """The search-side view of a device by name."""
    if name == "loihi":
        return LoihiSearchTarget()
    if name not in SEARCH_TARGETS:
        raise EdgeferError(f"unknown search target {name!r}; choose one of {', '.join(SEARCH_TARGETS)}")
    return EdgeSearchTarget(name)
