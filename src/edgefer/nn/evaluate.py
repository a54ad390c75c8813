"""Accuracy of a model on a dataset, with labels matched by canonical class name."""

from __future__ import annotations

import numpy as np

from edgefer.data.dataset import FaceDataset
from edgefer.data.preprocess import input_sparsity, prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel


def model_labels(model: FerModel, data: FaceDataset) -> np.ndarray:
    """The dataset's labels as indices into the model's classes (the two orders may differ)."""
    missing = [c for c in data.classes if c not in model.classes]
    if missing:
        raise EdgeferError(
            f"the data has class(es) {missing} that the model does not know (model classes: {list(model.classes)})",
            data.source or None,
        )
    mapping = np.array([model.classes.index(c) for c in data.classes])
    return mapping[data.labels]


def evaluate(model: FerModel, data: FaceDataset, input_mode: str | None = None) -> dict:
    mode = input_mode or model.input_mode
    labels = model_labels(model, data)
    inputs = prepare_input(data.images, mode)
    predicted = model.logits(inputs).argmax(axis=1)
    k = len(model.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = {c: float(confusion[i, i] / support[i]) for i, c in enumerate(model.classes) if support[i]}
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "n": int(len(labels)),
        "input": mode,
        "input_sparsity": input_sparsity(inputs),
        "balanced_accuracy": float(np.mean(list(per_class.values()))),
        "per_class_accuracy": per_class,
        "classes": list(model.classes),
        "confusion": confusion.tolist(),
    }
