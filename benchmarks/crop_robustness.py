"""How FER models hold up when the crop is not framed exactly as their training data: FER2013
PublicTest re-cropped at crop scales 0.8 ... 1.3 (the side of the crop relative to the dataset's
own framing; > 1 shows more around the face, the image border replicated where it runs out), with
the crop centre moved by 10 % of its side, and degraded (blur, low resolution, JPEG, noise), plus the
cross-dataset score FER2013 -> CK+48 on the six classes both share (``edgefer eval --classes shared``).

All models are measured in the same run on the same images. Writes runs/bench/crop_robustness.json
and prints a table.
    python benchmarks/crop_robustness.py [--models runs/zoo/fer2013-cnn-distilled-3.safetensors fer2013-cnn]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edgefer.data.faces import Face, Framing, crop_face
from edgefer.data.loaders import load_dataset
from edgefer.data.preprocess import prepare_input
from edgefer.nn.evaluate import evaluate
from edgefer.nn.train import degrade
from edgefer.nn.zoo import load_model

CROP_SCALES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
OFFSET = 0.1  # of the crop side, in each of the four directions
DEGRADE_SEED = 0


def recropped(images: np.ndarray, scale: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Each 48x48 face re-cropped as if a detector's box were the whole image, at ``scale``."""
    whole = Face((0, 0, images.shape[2], images.shape[1]))
    return np.stack([crop_face(image, whole, Framing(scale, dx, dy)) for image in images])


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    predicted = model.logits(prepare_input(images, model.input_mode)).argmax(1)
    return float(np.mean(predicted == labels))


def degraded(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    out = degrade(x, 0.5, torch.Generator().manual_seed(DEGRADE_SEED))
    return (out[:, 0].numpy() * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["runs/zoo/fer2013-cnn-distilled-3.safetensors", "fer2013-cnn"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    test = load_dataset("fer2013", "test")
    ckplus = load_dataset("ckplus")
    views = {f"scale {s:.1f}": recropped(test.images, s) for s in CROP_SCALES}
    shifts = [recropped(test.images, 1.0, dx, dy) for dx, dy in ((OFFSET, 0), (-OFFSET, 0), (0, OFFSET), (0, -OFFSET))]
    views_degraded = degraded(test.images)
    results = []
    for name in args.models:
        model = load_model(name)
        labels = np.array([model.classes.index(c) for c in test.classes])[test.labels]
        row = {"model": name, "params": model.summary()["params"], "macs": model.summary()["macs"]}
        row["publictest"] = {view: accuracy(model, images, labels) for view, images in views.items()}
        row["publictest"]["offset 0.1 (mean of 4)"] = float(np.mean([accuracy(model, s, labels) for s in shifts]))
        row["publictest"]["degraded (p=0.5 each)"] = accuracy(model, views_degraded, labels)
        shared = evaluate(model, ckplus, classes="shared")
        row["ckplus_shared"] = {"accuracy": shared["accuracy"], "balanced_accuracy": shared["balanced_accuracy"],
                                "n": shared["n"], "classes": shared["classes"], "per_class": shared["per_class_accuracy"]}
        results.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "crop_robustness.json"
    path.write_text(json.dumps({"n_publictest": len(test), "crop_scales": CROP_SCALES, "offset": OFFSET,
                                "models": results, "source": "measured"}, indent=2) + "\n")
    columns = list(results[0]["publictest"])
    table = Table(title=f"FER2013 PublicTest (n={len(test)}) accuracy by crop, and FER2013 -> CK+48 (6 shared classes)")
    table.add_column("model")
    for column in columns + ["CK+ shared", "CK+ balanced"]:
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(Path(row["model"]).stem, *[f"{100 * row['publictest'][c]:.2f}" for c in columns],
                      f"{100 * row['ckplus_shared']['accuracy']:.2f}", f"{100 * row['ckplus_shared']['balanced_accuracy']:.2f}")
    Console(width=220).print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
