"""Accuracy of a model on a dataset, with labels matched by canonical class name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefer.data.dataset import FaceDataset
from edgefer.data.preprocess import input_sparsity, prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel

CLASS_MODES = ("all", "shared")


def model_labels(model: FerModel, data: FaceDataset, remedy: str = "") -> np.ndarray:
    """The dataset's labels as indices into the model's classes (the two orders may differ); ``remedy``
    ends the error when the data has classes the model does not know."""
    missing = [c for c in data.classes if c not in model.classes]
    if missing:
        raise EdgeferError(
            f"the data has class(es) {missing} that the model does not know (model classes: {list(model.classes)})"
            + remedy, data.source or None,
        )
    mapping = np.array([model.classes.index(c) for c in data.classes])
    return mapping[data.labels]


@dataclass(frozen=True)
class ScoredClasses:
    """Which classes an evaluation scores and how data and model map onto them.

    classes: the scored classes, in the model's order. columns: the model's logit index of each.
    keep: mask of the images that are scored. labels: their labels as indices into ``classes``.
    dropped_data: data class -> number of images left out. dropped_model: model classes not scored.
    """

    classes: tuple[str, ...]
    columns: np.ndarray
    keep: np.ndarray
    labels: np.ndarray
    dropped_data: dict[str, int]
    dropped_model: tuple[str, ...]


def scored_classes(model: FerModel, data: FaceDataset, classes: str = "all") -> ScoredClasses:
    """``all``: every model class (data classes the model does not know are an error).
    ``shared``: only the classes both have; images of other data classes are dropped and the
    prediction is the argmax over the shared classes' logits."""
    if classes not in CLASS_MODES:
        raise EdgeferError(f"classes must be one of {', '.join(CLASS_MODES)}, got {classes!r}")
    if classes == "all":
        return ScoredClasses(tuple(model.classes), np.arange(len(model.classes)), np.ones(len(data), bool),
                             model_labels(model, data, "; --classes shared scores only the classes both know"),
                             {}, ())
    shared = tuple(c for c in model.classes if c in data.classes)
    if not shared:
        raise EdgeferError(
            f"the data and the model share no class, nothing to score "
            f"(data classes: {list(data.classes)}, model classes: {list(model.classes)})",
            data.source or None,
        )
    counts = data.class_counts()
    dropped_data = {c: counts[c] for c in data.classes if c not in shared}
    to_scored = np.array([shared.index(c) if c in shared else -1 for c in data.classes])
    mapped = to_scored[data.labels]
    keep = mapped >= 0
    if not keep.any():
        raise EdgeferError(
            f"no image is of a class the model knows (images per class: {counts}, model classes: {list(model.classes)})",
            data.source or None,
        )
    return ScoredClasses(shared, np.array([model.classes.index(c) for c in shared]), keep, mapped[keep],
                         dropped_data, tuple(c for c in model.classes if c not in shared))


def evaluate(model: FerModel, data: FaceDataset, input_mode: str | None = None, classes: str = "all") -> dict:
    """Accuracy, per-class accuracy and confusion over the scored classes (see ``scored_classes``)."""
    mode = input_mode or model.input_mode
    scored = scored_classes(model, data, classes)
    labels = scored.labels
    inputs = prepare_input(data.images if scored.keep.all() else data.images[scored.keep], mode)
    predicted = model.logits(inputs)[:, scored.columns].argmax(axis=1)
    scores = prediction_scores(predicted, scored)
    return {
        "accuracy": scores["accuracy"],
        "n": int(len(labels)),
        "input": mode,
        "input_sparsity": input_sparsity(inputs),
        "balanced_accuracy": scores["balanced_accuracy"],
        "per_class_accuracy": scores["per_class_accuracy"],
        "classes_mode": classes,
        "classes": list(scored.classes),
        "dropped_data_classes": scored.dropped_data,
        "dropped_model_classes": list(scored.dropped_model),
        "confusion": scores["confusion"],
    }


def prediction_scores(predicted: np.ndarray, scored: ScoredClasses) -> dict:
    """Accuracy, per-class accuracy (recall), balanced accuracy and confusion of predictions given as
    indices into ``scored.classes``."""
    k = len(scored.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (scored.labels, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = {c: float(confusion[i, i] / support[i]) for i, c in enumerate(scored.classes) if support[i]}
    return {"accuracy": float(np.mean(predicted == scored.labels)),
            "balanced_accuracy": float(np.mean(list(per_class.values()))),
            "per_class_accuracy": per_class, "confusion": confusion.tolist()}
