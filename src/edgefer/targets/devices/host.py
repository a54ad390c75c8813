"""This machine's CPU, measured: the ONNX FP32 artifact in onnxruntime, threads pinned."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from edgefer.targets.base import Artifact, Cost
from edgefer.targets.common import BaseTarget, export_to_temp
from edgefer.targets.registry import register_target
from edgefer.targets.runtimes import make_runner, pinned_threads, time_calls


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@register_target
class HostTarget(BaseTarget):
    name = "host"
    role = "host"
    order = 0
    search = None
    not_searchable = ("its power is not measured here (no power counters), and both objectives price energy "
                      "(hierarchical: the power-delay product; pareto: energy per inference)")
    label = "this machine's CPU (onnxruntime, FP32)"
    runtime = "onnxruntime CPUExecutionProvider"
    latency_source = "measured"

    def __init__(self, threads: int = 1, warmup: int = 20, runs: int = 200):
        self.threads, self.warmup, self.runs = threads, warmup, runs

    def cost(self, subject) -> Cost:
        """The measured cost of an artifact (or of a model, exported to a temporary folder first)."""
        if isinstance(subject, (Artifact, str, Path)):
            return self.measure(subject if isinstance(subject, Artifact) else Artifact.load(subject))
        artifact, cleanup = export_to_temp(self, subject)
        try:
            return self.measure(artifact)
        finally:
            cleanup()

    def measure(self, artifact: Artifact) -> Cost:
        """Measured latency of batch-1 inference: warm-up, then >= 200 timed runs; power is not
        measurable here (no RAPL / power meter), so power and energy stay None."""
        with pinned_threads(self.threads) as pin:
            runner = make_runner(artifact, threads=self.threads)
            x = np.random.default_rng(0).random(artifact.input_shape, dtype=np.float32)
            stats = time_calls(lambda: runner(x), self.warmup, self.runs)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        breakdown = {**stats, "threads": self.threads, "pinned_cpus": pin.cpus, "cpu": cpu_name(),
                     "cpus_visible": os.cpu_count(), "load_average_1min": load, "warmup": self.warmup}
        notes = ["power not measured on this machine (no power counters): power_w and energy_j are None"]
        if load is not None and load > 0.5 * (os.cpu_count() or 1):
            notes.append(f"machine was busy (load {load:.1f} on {os.cpu_count()} CPUs): latency is pessimistic")
        return Cost(stats["median_s"], None, None, "measured", ("this-project",), breakdown, notes)
