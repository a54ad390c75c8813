"""Loihi 1 mapping and cost model: cores per layer, per-core load, energy, latency, power.

Partitioning: each layer's neurons are cut into boxes (channels x rows x columns for convolutions,
neuron ranges for dense layers) that respect one core's limits (neurons, input axons, synaptic
memory); the box shape with the fewest cores wins. Output axons per core are counted afterwards
from the boxes of the next layer. Cores are placed in order on tiles of 4 cores, tiles on an 8 x 4
mesh per chip; every constant comes from the Chip object passed in (Loihi 1:
``targets/devices/loihi.json``).

Cost per image (Davies et al. 2018, Table 2): synops x E_synop + active / inactive neuron
updates x E_update + spike messages x (E_within_tile + hops x E_hop) + static power x latency.
Latency per timestep = the busiest core's work (synops x t_synop + neuron updates x t_update) plus
the barrier sync for the tiles in use, plus a host I/O time per step; times T. Every figure is a
model (``source: modeled``), not a measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.snn.chip import Chip, default_chip
from edgefer.snn.convert import SpikingLayer, SpikingNet
from edgefer.snn.simulate import SimResult


@dataclass
class Core:
    layer: str
    index: int  # global core number (placement order)
    box: tuple[int, int, int, int, int, int]  # c0, c1, y0, y1, x0, x1 of the layer's output (dense: c range)
    neurons: int
    synapses: int
    input_axons: int
    output_axons: int = 0
    tile: int = 0
    chip: int = 0
    mesh: tuple[int, int] = (0, 0)  # the tile's (column, row) on its chip's mesh

    def mesh_xy(self) -> tuple[int, int]:
        return self.mesh


def _place(index: int, chip: Chip) -> dict:
    """Tile, chip and mesh position of the core placed ``index``-th (cores fill tiles, tiles fill chips)."""
    per_tile, per_chip = chip.value("layout", "cores_per_tile"), chip.value("limits", "cores_per_chip")
    columns = chip.value("layout", "tiles_mesh_columns")
    tile = index // per_tile
    local = tile % (per_chip // per_tile)
    return {"tile": tile, "chip": index // per_chip, "mesh": (local % columns, local // columns)}


def _output_shape3(layer: SpikingLayer) -> tuple[int, int, int]:
    shape = layer.output_shape
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (shape[0], 1, 1)


def _input_box(layer: SpikingLayer, box) -> tuple[int, int, int, int, int, int]:
    """The input neurons (in the layer's input coordinates) that feed a box of output neurons."""
    if layer.kind == "dense":
        shape = layer.input_shape if len(layer.input_shape) == 3 else (layer.input_shape[0], 1, 1)
        return 0, shape[0], 0, shape[1], 0, shape[2]
    c0, c1, y0, y1, x0, x1 = box
    cin, hin, win = layer.input_shape
    k = layer.weight.shape[-1]
    s, p = layer.stride, layer.padding
    if layer.groups == 1:
        ic0, ic1 = 0, cin
    else:
        per_group_out = layer.output_shape[0] // layer.groups
        per_group_in = cin // layer.groups
        ic0, ic1 = (c0 // per_group_out) * per_group_in, ((c1 - 1) // per_group_out + 1) * per_group_in
    return (ic0, ic1, max(0, y0 * s - p), min(hin, (y1 - 1) * s - p + k), max(0, x0 * s - p), min(win, (x1 - 1) * s - p + k))


def _box_size(box) -> int:
    c0, c1, y0, y1, x0, x1 = box
    return max(0, c1 - c0) * max(0, y1 - y0) * max(0, x1 - x0)


def _overlap(a, b) -> int:
    return _box_size((max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3]), max(a[4], b[4]), min(a[5], b[5])))


def _limits(chip: Chip) -> dict:
    bytes_per_synapse = chip.value("layout", "synapse_bits") / 8
    return {"neurons": chip.value("limits", "neurons_per_core"),
            "input_axons": chip.value("limits", "input_axons_per_core"),
            "output_axons": chip.value("limits", "output_axons_per_core"),
            "synapses": int(chip.value("limits", "synaptic_memory_bytes_per_core") // bytes_per_synapse)}


def _best_tiling(layer: SpikingLayer, limits: dict) -> tuple[int, int, int]:
    """(channels, rows, columns) per core: fewest cores within the limits (worst-case interior box)."""
    c, h, w = _output_shape3(layer)
    if layer.kind == "dense":
        per_core = min(limits["neurons"], limits["synapses"] // max(1, layer.fan_in))
        if per_core < 1 or layer.fan_in > limits["input_axons"]:
            raise EdgeferError(f"layer {layer.name!r}: one neuron's {layer.fan_in} inputs exceed a Loihi core "
                               f"({limits['input_axons']} input axons, {limits['synapses']} synapses)")
        cores = math.ceil(c / per_core)
        return math.ceil(c / cores), 1, 1
    cin = layer.input_shape[0] // layer.groups if layer.groups > 1 else layer.input_shape[0]
    k, s = layer.weight.shape[-1], layer.stride
    cc, th, tw = np.meshgrid(np.arange(1, c + 1), np.arange(1, h + 1), np.arange(1, w + 1), indexing="ij")
    neurons = cc * th * tw
    in_channels = cc * (layer.input_shape[0] // c) if layer.groups > 1 else cin
    in_rows = np.minimum(layer.input_shape[1], (th - 1) * s + k)
    in_cols = np.minimum(layer.input_shape[2], (tw - 1) * s + k)
    axons = in_channels * in_rows * in_cols
    synapses = neurons * layer.fan_in
    ok = (neurons <= limits["neurons"]) & (axons <= limits["input_axons"]) & (synapses <= limits["synapses"])
    if not ok.any():
        raise EdgeferError(f"layer {layer.name!r}: not even one neuron fits a Loihi core")
    cores = np.ceil(c / cc) * np.ceil(h / th) * np.ceil(w / tw)
    # Fewest cores first, then the least input-axon traffic (fewer duplicated inputs).
    score = np.where(ok, cores * 1e9 + cores * axons, np.inf)
    i = np.unravel_index(int(np.argmin(score)), score.shape)
    return int(cc[i]), int(th[i]), int(tw[i])


def partition(net: SpikingNet, chip: Chip | None = None) -> list[Core]:
    """Cores for every layer of a SpikingNet, within the chip's per-core limits (default Loihi 1).

    A core whose neurons need more output axons than allowed (one per neuron and destination
    core) gets its layer re-cut with fewer neurons per core, until every core fits."""
    chip = chip or default_chip()
    limits = _limits(chip)
    caps = {layer.name: limits["neurons"] for layer in net.layers}
    while True:
        cores = _cut(net, limits, caps, chip)
        over = [core for core in cores if core.output_axons > limits["output_axons"]]
        if not over:
            return cores
        for layer_name in {core.layer for core in over}:
            largest = max(core.neurons for core in cores if core.layer == layer_name)
            if largest <= 1:
                raise EdgeferError(f"layer {layer_name!r}: a single neuron needs more than {limits['output_axons']} "
                                   "output axons")
            caps[layer_name] = max(1, int(largest * 0.75))


def _cut(net: SpikingNet, limits: dict, caps: dict, chip: Chip) -> list[Core]:
    cores: list[Core] = []
    per_layer: list[list[Core]] = []
    for layer in net.layers:
        cc, th, tw = _best_tiling(layer, dict(limits, neurons=caps[layer.name]))
        c, h, w = _output_shape3(layer)
        fan_in = layer.fan_in_map().reshape(c, h, w).numpy() if layer.kind == "conv" else None
        group = []
        for c0 in range(0, c, cc):
            for y0 in range(0, h, th):
                for x0 in range(0, w, tw):
                    box = (c0, min(c, c0 + cc), y0, min(h, y0 + th), x0, min(w, x0 + tw))
                    neurons = _box_size(box)
                    synapses = (int(fan_in[box[0]:box[1], box[2]:box[3], box[4]:box[5]].sum()) if fan_in is not None
                                else neurons * layer.fan_in)
                    core = Core(layer.name, len(cores), box, neurons, synapses, _box_size(_input_box(layer, box)),
                                **_place(len(cores), chip))
                    cores.append(core)
                    group.append(core)
        per_layer.append(group)
    for target_layer, sources, targets in zip(net.layers[1:], per_layer[:-1], per_layer[1:]):
        for src in sources:
            # One output axon per (neuron, destination core) pair; a layer's output box is already in
            # the next layer's input coordinates (same C, H, W; flatten keeps the order).
            src.output_axons = sum(_overlap(src.box, _input_box(target_layer, dst.box)) for dst in targets)
    return cores


def _layer_cores(cores: list[Core]) -> dict[str, list[Core]]:
    out: dict[str, list[Core]] = {}
    for core in cores:
        out.setdefault(core.layer, []).append(core)
    return out


def _box_sum(values: np.ndarray, box) -> float:
    c0, c1, y0, y1, x0, x1 = box
    return float(values[c0:c1, y0:y1, x0:x1].sum())


def barrier_time(tiles: int, chip: Chip | None = None) -> float:
    """Barrier sync time for a number of tiles: log-linear between Table 2's 1- and 32-tile points."""
    chip = chip or default_chip()
    low = chip.value("time_s", "barrier_sync_1_tile")
    high = chip.value("time_s", "barrier_sync_32_tiles")
    return low + (high - low) * math.log2(max(1, tiles)) / 5.0


@dataclass
class LoihiCost:
    energy_j: float
    latency_s: float
    power_w: float
    dynamic_energy_j: float
    static_energy_j: float
    energy_breakdown_j: dict
    timestep_s: float
    cores: int
    chips: int
    tiles: int
    static_power_w: float
    host_io_s_per_timestep: float
    source: str = "modeled"

    def to_dict(self) -> dict:
        return asdict(self)


def cost(net: SpikingNet, sim: SimResult, cores: list[Core] | None = None, static_power_w: float | None = None,
         host_io_s_per_timestep: float | None = None, chip: Chip | None = None) -> tuple[LoihiCost, list[dict]]:
    """Energy, latency and power per image from a recorded simulation; and per-core load rows."""
    if not sim.layers:
        raise EdgeferError("the simulation was run without accounting (record=False); cannot estimate costs")
    chip = chip or default_chip()
    cores = partition(net, chip) if cores is None else cores
    static_power_w = chip.value("static_power_w") if static_power_w is None else static_power_w
    host_io = chip.value("host_io_s_per_timestep") if host_io_s_per_timestep is None else host_io_s_per_timestep
    if static_power_w < 0 or host_io < 0:
        raise EdgeferError("static power and host I/O time must be >= 0")
    e = chip.values("energy_j")
    t = chip.values("time_s")
    timesteps = sim.timesteps
    batch = int(sim.layers[0].spikes.numel())
    by_layer = _layer_cores(cores)
    synops = sum(float(s.synops.double().mean()) for s in sim.layers)
    active = sum(float(s.active_updates.double().mean()) for s in sim.layers)
    updates = sum(s.neuron_updates for s in sim.layers)
    spike_energy = 0.0
    rows = []
    busiest = 0.0
    for index, (layer, stats) in enumerate(zip(net.layers, sim.layers)):
        shape = _output_shape3(layer)
        received = stats.received_events.reshape(shape).numpy() / batch
        spikes = stats.spike_counts.reshape(shape).numpy() / batch
        active_fraction = float(stats.active_updates.double().mean()) / max(1, stats.neuron_updates)
        next_layer = net.layers[index + 1] if index + 1 < len(net.layers) else None
        targets = by_layer[next_layer.name] if next_layer is not None else []
        for core in by_layer[layer.name]:
            core_synops = _box_sum(received, core.box)
            core_spikes = _box_sum(spikes, core.box)
            core_active = active_fraction * core.neurons * timesteps
            step_time = (core_synops * t["synop"] + core_active * t["neuron_update_active"]
                         + (core.neurons * timesteps - core_active) * t["neuron_update_inactive"]) / timesteps
            busiest = max(busiest, step_time)
            # Each spike becomes one message per destination core that holds its synapses.
            if targets:
                energy = 0.0
                x0, y0 = core.mesh_xy()
                for dst in targets:
                    share = _overlap(core.box, _input_box(next_layer, dst.box))
                    if share:
                        x1, y1 = dst.mesh_xy()
                        hop = abs(x1 - x0) * e["tile_hop_east_west"] + abs(y1 - y0) * e["tile_hop_north_south"]
                        energy += share * (e["spike_within_tile"] + hop)
                per_spike = energy / core.neurons
            else:
                per_spike = e["spike_within_tile"]  # output spikes: one message to the readout
            spike_energy += core_spikes * per_spike
            rows.append({"core": core.index, "layer": core.layer, "tile": core.tile, "chip": core.chip,
                         "neurons": core.neurons, "synapses": core.synapses, "input_axons": core.input_axons,
                         "output_axons": core.output_axons, "synops_per_image": core_synops,
                         "spikes_per_image": core_spikes, "step_time_s": step_time})
    # Input spikes arrive from the host at the chip's first tile, one message per destination core.
    first = net.layers[0]
    in_energy = 0.0
    input_spikes = float(sim.layers[0].input_spikes.double().mean())
    if by_layer[first.name]:
        in_shape = first.input_shape if len(first.input_shape) == 3 else (first.input_shape[0], 1, 1)
        total = max(1, _box_size((0, in_shape[0], 0, in_shape[1], 0, in_shape[2])))
        for dst in by_layer[first.name]:
            x1, y1 = dst.mesh_xy()
            hop = x1 * e["tile_hop_east_west"] + y1 * e["tile_hop_north_south"]
            fraction = _box_size(_input_box(first, dst.box)) / total
            in_energy += input_spikes * fraction * (e["spike_within_tile"] + hop)
    tiles = len({core.tile for core in cores})
    chips = len({core.chip for core in cores})
    timestep_s = busiest + barrier_time(tiles, chip) + host_io
    latency = timestep_s * timesteps
    breakdown = {"synops": synops * e["synop"],
                 "neuron_updates_active": active * e["neuron_update_active"],
                 "neuron_updates_inactive": (updates - active) * e["neuron_update_inactive"],
                 "spikes": spike_energy + in_energy}
    dynamic = sum(breakdown.values())
    static = static_power_w * chips * latency
    total = dynamic + static
    result = LoihiCost(total, latency, total / latency, dynamic, static, breakdown, timestep_s, len(cores), chips, tiles,
                       static_power_w, host_io)
    return result, rows
