"""Helpers shared by the tests (imported as ``helpers``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgefer.data.dataset import FaceDataset

# CK+ class folder names (public CK+48 layout) and the FER2013 train/test re-packaging names.
CK_FOLDER_NAMES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
FER_FOLDER_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_CSV_COLUMNS = "emotion,pixels,Usage"


def by_class(dataset: FaceDataset) -> dict[str, np.ndarray]:
    """Images per class name, in dataset order: compares datasets whose class order differs."""
    return {name: dataset.images[dataset.labels == i] for i, name in enumerate(dataset.classes)}


def write_class_folders(root: Path, images: np.ndarray, labels: np.ndarray, names) -> Path:
    """ROOT/<name>/<index>.png; the zero-padded global index keeps each class's file order."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / f"{i:05d}.png"), image)
    return root
