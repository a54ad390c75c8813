"""How well the live ``snn`` backend's confidence matches how often it is right: expected calibration
error (ECE, 10 equal-width bins of the top probability; Guo et al., ICML 2017) on a model's held-out
images, for the CNN's softmax, a softmax of the spiking net's output spike counts (what the backend
reported before, 1.00 on almost every face) and the backend's scores (the output neurons' integrated
input per step in the CNN's logit units, ``snn.evaluate.readout_scores``), all on the same images in
the same run. Writes runs/bench/snn_confidence.json and prints a table.
    python benchmarks/snn_confidence.py [--models ckplus-loihi fer2013-loihi fer2013-loihi-vgg-ws-qcfs] [--images 400]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgefer.data.preprocess import prepare_input
from edgefer.live.backends import SpikingClassifier, TorchClassifier, _softmax
from edgefer.nn.evaluate import model_labels
from edgefer.data.splits import evenly_spaced
from edgefer.nn.recipes import heldout_test_set
from edgefer.nn.zoo import load_model
from edgefer.snn.evaluate import readout_scores, run_snn

BINS = 10


def calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    ece = sum(abs(confidence[bins == b].mean() - correct[bins == b].mean()) * np.mean(bins == b)
              for b in range(BINS) if np.any(bins == b))
    return {"ece": float(ece), "mean_confidence": float(confidence.mean()), "accuracy": float(correct.mean())}


def measure(name: str, images: int) -> dict:
    model = load_model(name)
    test = heldout_test_set(model)
    test = test.subset(evenly_spaced(len(test), min(images, len(test))))
    inputs = prepare_input(test.images, model.input_mode)
    labels = model_labels(model, test)
    spiking = SpikingClassifier(model)
    target, artifact = spiking.target, spiking.artifact
    options, net = target.options_for(artifact), target.net(artifact)
    sim = run_snn(net, inputs, options.timesteps, options.encoding, options.seed, options.batch_size, record=False)
    scores = readout_scores(sim, net, options.readout, artifact.settings["output_scale"])
    return {"model": name, "n": int(len(labels)), "timesteps": options.timesteps,
            "cnn": calibration_error(TorchClassifier(model).predict_proba(inputs), labels),
            "spike_counts": calibration_error(_softmax(sim.counts.double().numpy()), labels),
            "estimated_logits": calibration_error(_softmax(scores), labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ckplus-loihi", "fer2013-loihi", "fer2013-loihi-vgg-ws-qcfs"])
    parser.add_argument("--images", type=int, default=400, help="held-out images per model, evenly spaced")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    rows = [measure(name, args.images) for name in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snn_confidence.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = Table(title="ECE (mean confidence / accuracy) on held-out images")
    for column in ("model", "n", "T", "softmax of spike counts", "estimated logits (snn backend)", "the CNN"):
        table.add_column(column)
    for row in rows:
        cells = [f"{row[k]['ece']:.3f} ({row[k]['mean_confidence']:.2f} / {row[k]['accuracy']:.2f})"
                 for k in ("spike_counts", "estimated_logits", "cnn")]
        table.add_row(row["model"], str(row["n"]), str(row["timesteps"]), *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
