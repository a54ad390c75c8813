"""SNN accuracy vs timesteps on each model's held-out test set, gray vs edge-map input, the study's conversion
(ReLU nets, thresholds at an activation percentile) vs conversion-aware QCFS nets (thresholds at their trained
clips, membrane started at half of them), with modeled Loihi cost per image (spikes, synops, energy, latency,
power).

    python benchmarks/snn_accuracy.py [--models ckplus-loihi ckplus-loihi-qcfs ...] [--timesteps 8 16 50]

For each model (its own input mode): convert (thresholds from 256 of its training images), quantise
for Loihi, simulate the test images with full accounting at each T in --timesteps; the max(T) run
also keeps the output after every step (the accuracy curve for every T <= max). A float-precision
curve is added for comparison. Accuracy
is simulated here; every cost figure is modeled (Davies et al. 2018 Table 2 constants). Writes
runs/bench/snn_accuracy.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edgefer.data.preprocess import prepare_input
from edgefer.nn.evaluate import model_labels
from edgefer.nn.recipes import heldout_test_set
from edgefer.nn.zoo import load_model
from edgefer.snn.evaluate import SnnOptions, build_snn, evaluate_snn
from edgefer.snn.simulate import SimResult, simulate


def conversion(model) -> str:
    """qcfs: thresholds at the trained clips (conversion-aware training); percentile: the study's rule."""
    return "qcfs" if model.spec.activation == "qcfs" else "percentile"


def accuracy_curve(net, inputs: np.ndarray, labels: np.ndarray, timesteps: int, readout: str, batch_size: int = 64) -> list[float]:
    correct = np.zeros(timesteps)
    for start in range(0, len(inputs), batch_size):
        history: list = []
        simulate(net, net.rates(inputs[start : start + batch_size]), timesteps, record=False, history=history)
        for t, (counts, membrane, integrated) in enumerate(history):
            predicted = SimResult(counts, membrane, integrated, t + 1).predictions(readout)
            correct[t] += np.sum(predicted == labels[start : start + batch_size])
    return (correct / len(inputs)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ckplus-loihi", "ckplus-loihi-edges", "ckplus-loihi-qcfs",
                                                        "ckplus-loihi-edges-qcfs", "ckplus-loihi-spiking"])
    parser.add_argument("--timesteps", nargs="+", type=int, default=[8, 16, 32, 50, 64])
    parser.add_argument("--no-float-curve", dest="float_curve", action="store_false",
                        help="skip the float-precision accuracy curve")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=SnnOptions.batch_size,
                        help="images simulated at once (smaller: less memory for a long T)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/snn_accuracy.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=160)  # full tables in logs too
    rows, curves = [], {}
    t_max = max(args.timesteps)
    for name in args.models:
        model = load_model(name)
        test = heldout_test_set(model)
        labels = model_labels(model, test)
        inputs = prepare_input(test.images, model.input_mode)
        cnn_accuracy = float(np.mean(model.logits(inputs).argmax(1) == labels))
        # Loihi precision: one accounted run at max(T) gives the curve and that T's cost; shorter T's
        # costs come from their own runs (the per-layer activity differs with T).
        net = build_snn(model, precision="loihi")
        started = time.time()
        for steps in sorted(args.timesteps, reverse=True):
            result = evaluate_snn(model, test, SnnOptions(timesteps=steps, batch_size=args.batch_size), net=net, with_layers=True,
                                  accuracy_curve=steps == t_max)
            result["model"] = name
            result["conversion"] = conversion(model)
            if steps == t_max:
                curves[f"{name}/loihi"] = {"model": name, "input": model.input_mode, "precision": "loihi",
                                           "conversion": conversion(model),
                                           "cnn_accuracy": cnn_accuracy,
                                           "accuracy_by_timestep": result.pop("accuracy_by_timestep")}
            rows.append(result)
        console.print(f"{name} loihi: T={args.timesteps} in {time.time() - started:.0f} s")
        if args.float_curve:
            started = time.time()
            float_net = build_snn(model, precision="float")
            curves[f"{name}/float"] = {"model": name, "input": model.input_mode, "precision": "float",
                                       "conversion": conversion(model),
                                       "cnn_accuracy": cnn_accuracy,
                                       "accuracy_by_timestep": accuracy_curve(float_net, inputs, labels, t_max, "spikes", args.batch_size)}
            console.print(f"{name} float curve in {time.time() - started:.0f} s")
    rows.sort(key=lambda r: (r["model"], r["timesteps"]))
    # Effect of edge-map input: edges / gray ratios of the modeled costs at each T (the study: edges
    # raised accuracy and cut power and energy on Loihi).
    by_input = {(r["input"], r["timesteps"]): r for r in rows if r["conversion"] == "percentile"}
    edge_effect = []
    for steps in args.timesteps:
        gray, edges = by_input.get(("gray", steps)), by_input.get(("edges", steps))
        if gray and edges:
            edge_effect.append({"timesteps": steps, "accuracy_gray": gray["accuracy"], "accuracy_edges": edges["accuracy"],
                                **{f"{k}_edges_over_gray": edges[k] / gray[k] for k in
                                   ("spikes_per_image", "synops_per_image", "energy_j", "latency_s", "power_w")}})
    payload = {"benchmark": "snn_accuracy", "edge_effect": edge_effect, "dataset": "each model's held-out test set (its card's split)",
               "machine": {"platform": platform.platform(), "threads": args.threads},
               "accuracy_source": "simulated", "cost_source": "modeled",
               "curves": curves, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")

    table = Table(title="SNN on each model's held-out test set (Loihi precision; cost figures modeled)")
    for col in ("model", "conversion", "input", "T", "SNN acc", "CNN acc", "input sparsity", "spikes/img", "synops/img", "energy",
                "latency", "power", "cores"):
        table.add_column(col, justify="left" if col in ("model", "conversion", "input") else "right")
    for r in rows:
        table.add_row(r["model"], r["conversion"], r["input"], str(r["timesteps"]), f"{100 * r['accuracy']:.2f} %",
                      f"{100 * r['cnn_accuracy']:.2f} %", f"{r['input_sparsity']:.3f}", f"{r['spikes_per_image']:,.0f}",
                      f"{r['synops_per_image']:,.0f}", f"{r['energy_j'] * 1e3:.3f} mJ", f"{r['latency_s'] * 1e3:.3f} ms",
                      f"{r['power_w'] * 1e3:.1f} mW", str(r["cores"]))
    console.print(table)
    curve_table = Table(title="accuracy vs timesteps (spike-count readout)")
    curve_table.add_column("model / precision")
    marks = [t for t in (4, 8, 12, 16, 24, 32, 50, 64, 100) if t <= t_max]
    for t in marks:
        curve_table.add_column(f"T={t}", justify="right")
    for key, c in curves.items():
        curve_table.add_row(f"{key} (CNN {100 * c['cnn_accuracy']:.1f})",
                            *[f"{100 * c['accuracy_by_timestep'][t - 1]:.1f}" for t in marks])
    console.print(curve_table)
    for e in edge_effect:
        console.print(f"T={e['timesteps']}: edges/gray spikes x{e['spikes_per_image_edges_over_gray']:.2f}, synops "
                      f"x{e['synops_per_image_edges_over_gray']:.2f}, energy x{e['energy_j_edges_over_gray']:.2f}, "
                      f"power x{e['power_w_edges_over_gray']:.2f}; accuracy {100 * e['accuracy_gray']:.2f} -> "
                      f"{100 * e['accuracy_edges']:.2f} %")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
