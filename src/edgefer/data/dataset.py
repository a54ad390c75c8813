"""The in-memory dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefer.errors import EdgeferError

IMAGE_SIZE = 48


@dataclass(frozen=True)
class FaceDataset:
    """Face crops with integer labels.

    images: uint8 array N x 48 x 48 (grayscale). labels: int64 array N, indices into ``classes``.
    classes: canonical class names (see ``edgefer.data.labels``). source: where it came from.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str = ""

    def __post_init__(self):
        images, labels = self.images, self.labels
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
            raise EdgeferError(
                f"images must be uint8 N x {IMAGE_SIZE} x {IMAGE_SIZE}, got {images.dtype} {images.shape}",
                self.source or None,
            )
        if labels.shape != (len(images),):
            raise EdgeferError(f"{len(images)} images but labels of shape {labels.shape}", self.source or None)
        if len(images) == 0:
            raise EdgeferError("the dataset is empty", self.source or None)
        if labels.min() < 0 or labels.max() >= len(self.classes):
            bad = labels[(labels < 0) | (labels >= len(self.classes))][0]
            raise EdgeferError(
                f"label {int(bad)} is out of range for {len(self.classes)} classes {list(self.classes)}",
                self.source or None,
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "FaceDataset":
        index = np.asarray(index)
        return FaceDataset(self.images[index], self.labels[index], self.classes, self.source)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}


@dataclass(frozen=True)
class Validation:
    """Labelled images a model never trained on, for choices made after training."""

    inputs: np.ndarray  # prepared in the model's input mode
    labels: np.ndarray  # indices into the model's classes
    description: str


@dataclass(frozen=True)
class Calibration:
    """What an export may look at besides the weights: ``inputs``, prepared training images (int8 ranges,
    spiking thresholds) described by ``description``; and ``validation``, labelled images the model never
    trained on, for choices such as how many timesteps its SNN runs (None when its split keeps none)."""

    inputs: np.ndarray
    description: str
    validation: Validation | None = None
