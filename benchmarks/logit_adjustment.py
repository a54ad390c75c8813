"""Post-hoc logit adjustment (Menon et al., ICLR 2021, "Long-tail learning via logit adjustment"):
subtract tau x log(training class prior) from a model's logits before the argmax. tau = 1 is the
choice their analysis gives for balanced error; no tau is selected here on any test data, the sweep
only shows the trade-off. FER2013's prior is far from uniform (disgust 1.5 %, happy 25 %), CK+48's is
not FER2013's, so the adjustment trades FER2013 PublicTest accuracy for balanced and cross-dataset
accuracy (FER2013 -> CK+48 on the six shared classes, as ``edgefer eval --classes shared``).

Every model is measured in the same run on the same images. Writes runs/bench/logit_adjustment.json
and prints a table.
    python benchmarks/logit_adjustment.py [--models fer2013-cnn fer2013-loihi-large-ws] [--taus 0 0.5 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgefer.data.loaders import load_dataset
from edgefer.data.preprocess import prepare_input
from edgefer.nn.evaluate import prediction_scores, scored_classes
from edgefer.nn.recipes import training_set
from edgefer.nn.zoo import load_model


def training_prior(model) -> np.ndarray:
    """Class frequencies of the model's own training images, in the model's class order."""
    labels = scored_classes(model, training_set(model)).labels
    return np.bincount(labels, minlength=len(model.classes)) / len(labels)


def scores(model, data, classes: str, log_prior: np.ndarray, taus: list[float]) -> dict:
    """Accuracy, balanced accuracy, per-class accuracy (recall) and confusion at each tau."""
    scored = scored_classes(model, data, classes)
    logits = model.logits(prepare_input(data.images[scored.keep], model.input_mode))
    out = {str(tau): prediction_scores((logits - tau * log_prior)[:, scored.columns].argmax(1), scored) for tau in taus}
    return {"n": int(len(scored.labels)), "classes": list(scored.classes), "by_tau": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fer2013-cnn", "fer2013-loihi-large-ws"])
    parser.add_argument("--taus", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    test = load_dataset("fer2013", "test")
    ckplus = load_dataset("ckplus")
    results = []
    for name in args.models:
        model = load_model(name)
        prior = training_prior(model)
        log_prior = np.log(prior)
        results.append({"model": name, "prior": dict(zip(model.classes, prior.round(4).tolist())),
                        "publictest": scores(model, test, "all", log_prior, args.taus),
                        "ckplus_shared": scores(model, ckplus, "shared", log_prior, args.taus)})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "logit_adjustment.json"
    path.write_text(json.dumps({"method": "logits - tau * log(training prior), Menon et al. 2021", "taus": args.taus,
                                "models": results, "source": "measured"}, indent=2) + "\n")
    table = Table(title="Post-hoc logit adjustment: FER2013 PublicTest and FER2013 -> CK+48 (6 shared classes), %")
    for column in ("model", "tau", "PublicTest", "balanced", "CK+ shared", "balanced", "CK+ disgust", "CK+ fear"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        for tau in map(str, args.taus):
            public, cross = row["publictest"]["by_tau"][tau], row["ckplus_shared"]["by_tau"][tau]
            table.add_row(Path(row["model"]).stem, tau, *(f"{100 * v:.2f}" for v in (
                public["accuracy"], public["balanced_accuracy"], cross["accuracy"], cross["balanced_accuracy"],
                cross["per_class_accuracy"].get("disgust", float("nan")),
                cross["per_class_accuracy"].get("fear", float("nan")))))
    Console(width=200).print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
