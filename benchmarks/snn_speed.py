"""Simulation throughput of edgefer's SNN simulator vs snnTorch and Sinabs on the same converted
weights (the study's Loihi net), T timesteps, batch 1 and 64, on N CPU threads.

    python benchmarks/snn_speed.py [--model ckplus-loihi] [--timesteps 50] [--threads 2]

All simulators get the same input spike trains (deterministic rate code of the off-chip encoder's
rates; encoding is not timed) and the same float weights (threshold 1, reset by subtraction, one
spike per step at most). snnTorch runs its usual per-timestep loop (Leaky, beta=1: IF, no reset
delay); Sinabs runs its squeeze layers (conv over batch x time, then its IAF scan). edgefer runs
both its float and its integer Loihi mode. Accuracy (argmax of output spike counts, ties to the
first class, the same rule for every simulator) is over the whole held-out test set; images/s
from the batch-64 pass over that set and from --batch1-images single images. Peers are optional
(benchmark-only extras): a missing one is reported as skipped. Writes runs/bench/snn_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
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
            conv.weight.data.copy_(layer.weight)
            if layer.bias is not None:
                conv.bias.data.copy_(layer.bias)
            out.append((layer.name, conv))
        else:
            if len(layer.input_shape) > 1:
                out.append((f"{layer.name}_flatten", nn.Flatten()))
            linear = nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=layer.bias is not None)
            linear.weight.data.copy_(layer.weight)
            if layer.bias is not None:
                linear.bias.data.copy_(layer.bias)
            out.append((layer.name, linear))
    return out


class EdgeferRunner:
    def __init__(self, net: SpikingNet, label: str):
        self.net, self.label = net, label

    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:  # spikes: T x B x C x H x W
        rates = torch.zeros(spikes.shape[1:])
        return simulate(self.net, rates, spikes.shape[0], record=False, spikes_in=spikes).counts


class SnnTorchRunner:
    label = "snnTorch"

    def __init__(self, net: SpikingNet):
        import snntorch
        import snntorch.utils

        self.utils = snntorch.utils
        layers = []
        for name, module in synapse_modules(net):
            layers.append((name, module))
            if not isinstance(module, nn.Flatten):
                layers.append((f"{name}_if", snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract",
                                                            init_hidden=True, reset_delay=False)))
        self.model = nn.Sequential(OrderedDict(layers)).eval()

    @torch.no_grad()
    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:
        self.utils.reset(self.model)
        counts = 0
        for t in range(spikes.shape[0]):
            counts = counts + self.model(spikes[t])
        return counts


class SinabsRunner:
    label = "Sinabs"

    def __init__(self, net: SpikingNet):
        import sinabs
        import sinabs.activation as activation
        import sinabs.layers as sl

        self.sinabs, self.sl, self.activation = sinabs, sl, activation
        self.parts = synapse_modules(net)
        self.model = None
        self.batch = None

    def _build(self, batch: int):
        layers = []
        for name, module in self.parts:
            layers.append((name, module))
            if not isinstance(module, nn.Flatten):
                layers.append((f"{name}_if", self.sl.IAFSqueeze(batch_size=batch, spike_threshold=1.0,
                                                                 spike_fn=self.activation.SingleSpike,
                                                                 reset_fn=self.activation.MembraneSubtract(),
                                                                 min_v_mem=None)))
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


def run(runner, spike_batches: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    counts = torch.cat([runner(s) for s in spike_batches])
    return counts, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ckplus-loihi")
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch1-images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per case; the fastest is kept")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/snn_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=160)  # full tables in logs too
    model = load_model(args.model)
    test = heldout_test_set(model)
    labels = model_labels(model, test)
    inputs = prepare_input(test.images, model.input_mode)
    float_net = build_snn(model, precision="float")
    rates = float_net.rates(inputs)
    spikes = encode(rates, args.timesteps)  # T x N x C x H x W, shared by every simulator
    runners = [EdgeferRunner(float_net, "edgefer (float)"), EdgeferRunner(quantise_loihi(float_net), "edgefer (loihi int)")]
    skipped = {}
    for peer in (SnnTorchRunner, SinabsRunner):
        try:
            runners.append(peer(float_net))
        except ImportError as exc:
            skipped[peer.label] = f"not installed ({exc})"
    rows = []
    for runner in runners:
        runner(spikes[:, :2])  # warm-up: allocator, kernels and lazy imports are not timed
        row = {"simulator": runner.label, "timesteps": args.timesteps, "threads": args.threads, "source": "measured"}
        for batch, count in ((64, len(inputs)), (1, args.batch1_images)):
            batches = [spikes[:, i : i + batch] for i in range(0, count, batch)]
            best, counts = None, None
            for _ in range(args.repeats):
                counts, seconds = run(runner, batches)
                best = seconds if best is None else min(best, seconds)
            row[f"images_per_s_batch{batch}"] = count / best
            if batch == 64:
                row["accuracy"] = float(np.mean(counts.argmax(1).numpy() == labels))
                row["n"] = len(labels)
                row["output_spikes_per_image"] = float(counts.sum() / len(labels))
        rows.append(row)
        console.print(f"{runner.label}: {row['images_per_s_batch64']:.2f} img/s (batch 64), "
                      f"{row['images_per_s_batch1']:.2f} img/s (batch 1), accuracy {row['accuracy']:.4f}")
    ours = max(r["images_per_s_batch64"] for r in rows if r["simulator"].startswith("edgefer"))
    peers = [r for r in rows if not r["simulator"].startswith("edgefer")]
    for key in ("images_per_s_batch64", "images_per_s_batch1"):
        best_peer = max((r[key] for r in peers), default=None)
        for r in rows:
            r[f"speedup_vs_fastest_peer_{key.split('_')[-1]}"] = None if best_peer is None else r[key] / best_peer
    payload = {"benchmark": "snn_speed", "model": args.model, "timesteps": args.timesteps, "threads": args.threads,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "note": "shared 2-core machine with other jobs running: absolute figures are pessimistic"},
               "peers_skipped": skipped, "rows": rows, "best_edgefer_batch64": ours}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    table = Table(title=f"SNN simulation throughput, {args.model}, T={args.timesteps}, {args.threads} threads (measured)")
    for col in ("simulator", "accuracy", "img/s batch 64", "img/s batch 1", "x fastest peer (64)", "x fastest peer (1)"):
        table.add_column(col, justify="left" if col == "simulator" else "right")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        table.add_row(r["simulator"], f"{100 * r['accuracy']:.2f} %", f"{r['images_per_s_batch64']:.2f}",
                      f"{r['images_per_s_batch1']:.2f}", fmt(r["speedup_vs_fastest_peer_batch64"]),
                      fmt(r["speedup_vs_fastest_peer_batch1"]))
    console.print(table)
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
