"""Simulation throughput of edgefer's SNN simulator vs snnTorch and Sinabs on the same converted
weights (the study's Loihi net), T timesteps, batch 1 and 64, on N CPU threads.

    python benchmarks/snn_speed.py [--model ckplus-loihi] [--timesteps 50] [--threads 2] [--repeats 3]

All simulators get the same input spike trains (deterministic rate code of the off-chip encoder's
rates; encoding is not timed) and the same weights, in two sets: the float conversion (threshold
1) and its Loihi quantisation (8-bit mantissas x power-of-two scale, integer thresholds; exact in
float32, and Sinabs also clamps the membrane at the 24-bit floor as Loihi does). Neurons are IF
with reset by subtraction, one spike per step at most. snnTorch runs its usual per-timestep loop
(Leaky, beta=1: IF, no reset delay); Sinabs runs its squeeze layers (conv over batch x time, then
its IAF scan). edgefer runs each set in its own mode (float, integer Loihi), without accounting
(``record=False``, what the peers do) and with the per-layer accounting the product reports
(``record=True``). Speed-ups compare edgefer with the faster peer on the same weights. Accuracy
(argmax of output spike counts, ties to the first class, the same rule for every simulator) is
over the whole held-out test set; images/s from the batch-64 pass over that set and from
--batch1-images single images, the median of --repeats passes, in wall time and in CPU time of
the process (all threads; less disturbed by other jobs on a shared machine), the simulators
interleaved within each pass so that they share the machine's load; the load average is
recorded. Peers are optional (benchmark-only extras): a missing one is reported as skipped.
Writes runs/bench/snn_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from edgefer.data.preprocess import prepare_input
from edgefer.nn.evaluate import model_labels
from edgefer.nn.recipes import heldout_test_set
from edgefer.nn.zoo import load_model
from edgefer.snn.convert import SpikingNet, quantise_loihi
from edgefer.snn.evaluate import build_snn
from edgefer.snn.simulate import encode, simulate


def synapse_modules(net: SpikingNet) -> list[tuple[str, nn.Module]]:
    """torch layers holding the converted float weights (shared by the peers)."""
    out = []
    for layer in net.layers:
        if layer.kind == "conv":
            conv = nn.Conv2d(layer.weight.shape[1] * layer.groups, layer.weight.shape[0], layer.weight.shape[-1],
                             layer.stride, layer.padding, groups=layer.groups, bias=layer.bias is not None)
            conv.weight.data.copy_(layer.weight * layer.weight_scale)
            if layer.bias is not None:
                conv.bias.data.copy_(layer.bias)
            out.append((layer.name, conv))
        else:
            if len(layer.input_shape) > 1:
                out.append((f"{layer.name}_flatten", nn.Flatten()))
            linear = nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=layer.bias is not None)
            linear.weight.data.copy_(layer.weight * layer.weight_scale)
            if layer.bias is not None:
                linear.bias.data.copy_(layer.bias)
            out.append((layer.name, linear))
    return out


class EdgeferRunner:
    peer = False

    def __init__(self, net: SpikingNet, weights: str, record: bool):
        self.net, self.weights, self.record = net, weights, record
        self.label = f"edgefer ({net.precision}{', with accounting' if record else ''})"

    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:  # spikes: T x B x C x H x W
        rates = torch.zeros(spikes.shape[1:])
        return simulate(self.net, rates, spikes.shape[0], record=self.record, spikes_in=spikes).counts


def thresholds(net: SpikingNet) -> dict[str, float]:
    return {layer.name: layer.threshold for layer in net.layers}


class SnnTorchRunner:
    peer = True

    def __init__(self, net: SpikingNet, weights: str):
        import snntorch
        import snntorch.utils

        self.label, self.weights = f"snnTorch ({weights} weights)", weights
        self.utils = snntorch.utils
        layers = []
        for name, module in synapse_modules(net):
            layers.append((name, module))
            if not isinstance(module, nn.Flatten):
                layers.append((f"{name}_if", snntorch.Leaky(beta=1.0, threshold=thresholds(net)[name],
                                                            reset_mechanism="subtract", init_hidden=True,
                                                            reset_delay=False)))
        self.model = nn.Sequential(OrderedDict(layers)).eval()

    @torch.no_grad()
    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:
        self.utils.reset(self.model)
        counts = 0
        for t in range(spikes.shape[0]):
            counts = counts + self.model(spikes[t])
        return counts


class SinabsRunner:
    peer = True

    def __init__(self, net: SpikingNet, weights: str):
        import sinabs
        import sinabs.activation as activation
        import sinabs.layers as sl

        self.label, self.weights = f"Sinabs ({weights} weights)", weights
        self.sinabs, self.sl, self.activation = sinabs, sl, activation
        self.parts = synapse_modules(net)
        self.thresholds = thresholds(net)
        self.floor = None if net.state_bounds is None else net.state_bounds[0]
        self.model = None
        self.batch = None

    def _build(self, batch: int):
        layers = []
        for name, module in self.parts:
            layers.append((name, module))
            if not isinstance(module, nn.Flatten):
                layers.append((f"{name}_if", self.sl.IAFSqueeze(batch_size=batch, spike_threshold=self.thresholds[name],
                                                                 spike_fn=self.activation.SingleSpike,
                                                                 reset_fn=self.activation.MembraneSubtract(),
                                                                 min_v_mem=self.floor)))
        self.model = nn.Sequential(OrderedDict(layers)).eval()
        self.batch = batch

    @torch.no_grad()
    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:
        steps, batch = spikes.shape[:2]
        if self.batch != batch:
            self._build(batch)
        self.sinabs.reset_states(self.model)
        flat = spikes.transpose(0, 1).reshape(batch * steps, *spikes.shape[2:])  # (batch, time) squeezed
        out = self.model(flat)
        return out.reshape(batch, steps, -1).sum(1)


def run(runner, spike_batches: list[torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """Output spike counts, wall seconds and this process's CPU seconds (all threads)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    counts = torch.cat([runner(s) for s in spike_batches])
    return counts, time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ckplus-loihi")
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch1-images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per case; the median is kept")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/snn_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=220)  # full tables in logs too
    model = load_model(args.model)
    test = heldout_test_set(model)
    labels = model_labels(model, test)
    inputs = prepare_input(test.images, model.input_mode)
    float_net = build_snn(model, precision="float")
    nets = {"float": float_net, "loihi": quantise_loihi(float_net)}
    rates = float_net.rates(inputs)
    spikes = encode(rates, args.timesteps)  # T x N x C x H x W, shared by every simulator
    runners = [EdgeferRunner(net, weights, record) for weights, net in nets.items() for record in (False, True)]
    skipped = {}
    for peer in (SnnTorchRunner, SinabsRunner):
        for weights, net in nets.items():
            try:
                runners.append(peer(net, weights))
            except ImportError as exc:
                skipped[peer.__name__.removesuffix("Runner")] = f"not installed ({exc})"
    cases = {64: [spikes[:, i : i + 64] for i in range(0, len(inputs), 64)],
             1: [spikes[:, i : i + 1] for i in range(args.batch1_images)]}
    count = {64: len(inputs), 1: args.batch1_images}
    for runner in runners:
        runner(spikes[:, :2])  # warm-up: allocator, kernels and lazy imports are not timed
    load_before = os.getloadavg()
    seconds = {(id(r), b): [] for r in runners for b in cases}
    cpu_seconds = {(id(r), b): [] for r in runners for b in cases}
    counts = {}
    for repeat in range(args.repeats):
        for batch, batches in cases.items():
            for runner in runners:  # interleaved: every simulator sees the same stretch of load
                counts[id(runner), batch], elapsed, cpu = run(runner, batches)
                seconds[id(runner), batch].append(elapsed)
                cpu_seconds[id(runner), batch].append(cpu)
        console.print(f"pass {repeat + 1}/{args.repeats} done (load average {os.getloadavg()[0]:.1f})")
    load_after = os.getloadavg()
    rows = []
    for runner in runners:
        out = counts[id(runner), 64]
        row = {"simulator": runner.label, "weights": runner.weights, "peer": runner.peer,
               "record": getattr(runner, "record", False), "timesteps": args.timesteps, "threads": args.threads,
               "source": "measured", "accuracy": float(np.mean(out.argmax(1).numpy() == labels)), "n": len(labels),
               "output_spikes_per_image": float(out.sum() / len(labels))}
        for batch in cases:
            times = seconds[id(runner), batch]
            row[f"images_per_s_batch{batch}"] = count[batch] / statistics.median(times)
            row[f"images_per_s_batch{batch}_runs"] = [count[batch] / t for t in times]
            # CPU time is less disturbed by other jobs on a shared machine than wall time.
            row[f"images_per_cpu_s_batch{batch}"] = count[batch] / statistics.median(cpu_seconds[id(runner), batch])
        rows.append(row)
    for batch in cases:
        key = f"images_per_s_batch{batch}"
        cpu_key = f"images_per_cpu_s_batch{batch}"
        for row in rows:
            peers = [r for r in rows if r["peer"] and r["weights"] == row["weights"]]
            row[f"speedup_vs_fastest_peer_batch{batch}"] = row[key] / max(r[key] for r in peers) if peers else None
            row[f"cpu_speedup_vs_fastest_peer_batch{batch}"] = (row[cpu_key] / max(r[cpu_key] for r in peers)
                                                                 if peers else None)
    payload = {"benchmark": "snn_speed", "model": args.model, "timesteps": args.timesteps, "threads": args.threads,
               "repeats": args.repeats, "statistic": "median of the repeats",
               "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                           "load_average_1_5_15_before": load_before, "load_average_1_5_15_after": load_after,
                           "note": "shared 2-core machine with other jobs running: absolute figures are pessimistic, "
                                   "ratios come from interleaved passes"},
               "peers_skipped": skipped, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    table = Table(title=f"SNN simulation throughput, {args.model}, T={args.timesteps}, {args.threads} threads, "
                        f"median of {args.repeats} (measured; load average {load_before[0]:.1f} -> {load_after[0]:.1f})")
    for col in ("simulator", "accuracy", "img/s batch 64", "img/s batch 1", "x fastest peer (64)", "x fastest peer (1)",
                "img/CPU-s 64", "img/CPU-s 1", "x peer CPU (64)", "x peer CPU (1)"):
        table.add_column(col, justify="left" if col == "simulator" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        table.add_row(r["simulator"], f"{100 * r['accuracy']:.2f} %", f"{r['images_per_s_batch64']:.2f}",
                      f"{r['images_per_s_batch1']:.2f}", fmt(r["speedup_vs_fastest_peer_batch64"]),
                      fmt(r["speedup_vs_fastest_peer_batch1"]), f"{r['images_per_cpu_s_batch64']:.2f}",
                      f"{r['images_per_cpu_s_batch1']:.2f}", fmt(r["cpu_speedup_vs_fastest_peer_batch64"]),
                      fmt(r["cpu_speedup_vs_fastest_peer_batch1"]))
    console.print(table)
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
