"""The Loihi cost model against measured Loihi runs.

Blouw et al. 2019 measured a keyword spotter (390-256-256-29, fully connected) and a family of larger
nets on a Loihi 1 board, and their repository keeps the power logs; ``loihi.json`` stores those runs
(``published_measurements``). Each net is rebuilt here as a SpikingNet whose neurons fire at the
assumed rate (activity was not published), simulated for its 10 timesteps and priced by
``edgefer.snn.loihi.cost``. Predicted latency per inference and running power are set against the
measured ones, first with the chip's constants (Davies et al. 2018 per-operation figures, boot-idle
static power, no host I/O), then with the two exposed system parameters fitted on the ``fit`` points
only: host I/O time per timestep (from latency) and static power (from running power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edgefer.errors import EdgeferError
from edgefer.snn.chip import Chip, default_chip
from edgefer.snn.convert import SpikingLayer, SpikingNet, quantise_loihi
from edgefer.snn.loihi import cost, partition
from edgefer.snn.simulate import simulate
from edgefer.targets.costmodel import ape, mdape


def _uniform_layer(name: str, inputs: int, outputs: int, groups: int) -> SpikingLayer:
    """A 1x1 layer whose every neuron reaches its threshold (1) when all its inputs spike: with inputs firing
    at any rate, it fires at that rate (uniform weights)."""
    fan_in = inputs // groups
    weight = torch.full((outputs, fan_in, 1, 1), 1.0 / fan_in)
    return SpikingLayer(name, "conv", weight, None, 1.0, (inputs, 1, 1), (outputs, 1, 1), groups=groups)


def measured_net(network: list[dict], input_size: int) -> SpikingNet:
    """A published net as 1x1 layers on a 1x1 map: dense layers, and parallel branches as grouped layers
    (each branch's synapses only: the fan-out the chip stores and spends energy on). Fed inputs at a rate,
    every layer fires at that rate."""
    layers, width = [], input_size
    for index, block in enumerate(network):
        if block["kind"] == "dense":
            layers.append(_uniform_layer(f"dense{index}", width, block["neurons"], 1))
            width = block["neurons"]
        elif block["kind"] == "branches":
            copies, neurons = block["copies"], block["neurons"]
            layers.append(_uniform_layer(f"branch{index}_1", width, copies * neurons, 1))
            for depth in range(2, block["depth"] + 1):
                layers.append(_uniform_layer(f"branch{index}_{depth}", copies * neurons, copies * neurons, copies))
            width = copies * neurons
        else:
            raise EdgeferError(f"unknown block kind {block['kind']!r} in a published Loihi measurement")
    net = SpikingNet(layers, (input_size, 1, 1), tuple(f"out{i}" for i in range(width)))
    return quantise_loihi(net)


@dataclass
class Prediction:
    latency_s: float
    power_w: float
    dynamic_energy_j: float
    compute_step_s: float  # per timestep: busiest core and barrier, without host I/O
    cores: int


def predict(point: dict, input_size: int, rate: float, chip: Chip, static_power_w: float | None = None,
            host_io_s_per_timestep: float | None = None) -> Prediction:
    net = measured_net(point["network"], input_size)
    sim = simulate(net, torch.full((1, input_size, 1, 1), rate), point["timesteps"])
    cores = partition(net, chip)
    run, _ = cost(net, sim, cores, static_power_w, host_io_s_per_timestep, chip)
    return Prediction(run.latency_s, run.power_w, run.dynamic_energy_j, run.timestep_s - run.host_io_s_per_timestep,
                      len(cores))


def validate(chip: Chip | None = None) -> dict:
    """Predicted vs measured latency and running power for every stored measurement, with the chip's own
    constants and with host I/O and static power fitted on the fit points; median absolute percentage
    errors per role."""
    chip = chip or default_chip()
    stored = chip.data.get("published_measurements")
    if not stored or not stored.get("points"):
        raise EdgeferError(f"chip {chip.name!r} stores no published measurements to validate against")
    input_size, rate = stored["input_size"], stored["assumed_firing_rate"]["value"]
    points = stored["points"]
    default = [predict(p, input_size, rate, chip) for p in points]
    fit = [(p, d) for p, d in zip(points, default) if p["role"] == "fit"]
    if not fit:
        raise EdgeferError(f"chip {chip.name!r}: no published measurement is marked as a fit point")
    # Host I/O: the measured time per step that the modeled compute does not explain; static power: the
    # measured running power that the modeled dynamic energy does not explain (both medians over fit points).
    host_io = float(np.median([max(0.0, 1 / p["inferences_per_s"] / p["timesteps"] - d.compute_step_s) for p, d in fit]))
    static = float(np.median([p["running_power_w"] - d.dynamic_energy_j * p["inferences_per_s"] for p, d in fit]))
    if not (math.isfinite(host_io) and math.isfinite(static)) or static < 0:
        raise EdgeferError(f"chip {chip.name!r}: the fit points give no physical host I/O time or static power")
    calibrated = [predict(p, input_size, rate, chip, static, host_io) for p in points]
    rows = []
    for p, before, after in zip(points, default, calibrated):
        latency = 1 / p["inferences_per_s"]
        rows.append({"name": p["name"], "role": p["role"], "timesteps": p["timesteps"], "cores": before.cores,
                     "measured_latency_s": latency, "measured_power_w": p["running_power_w"],
                     "measured_energy_j": p["running_power_w"] * latency,
                     "default_latency_s": before.latency_s, "default_power_w": before.power_w,
                     "calibrated_latency_s": after.latency_s, "calibrated_power_w": after.power_w,
                     "modeled_dynamic_energy_j": before.dynamic_energy_j,
                     "default_latency_ape": ape(before.latency_s, latency),
                     "default_power_ape": ape(before.power_w, p["running_power_w"]),
                     "calibrated_latency_ape": ape(after.latency_s, latency),
                     "calibrated_power_ape": ape(after.power_w, p["running_power_w"])})
    summary = {f"{setting}_{key}_mdape_{role}": mdape(r[f"{setting}_{key}_ape"] for r in rows if r["role"] == role)
               for setting in ("default", "calibrated") for key in ("latency", "power") for role in ("fit", "holdout")}
    return {"chip": chip.name, "assumed_firing_rate": rate, "rows": rows,
            "calibrated": {"host_io_s_per_timestep": host_io, "static_power_w": static},
            "n_fit": len(fit), "n_holdout": sum(1 for p in points if p["role"] == "holdout"), **summary,
            "citations": sorted({key for p in points for key in p["citations"]})}
