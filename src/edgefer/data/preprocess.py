"""Model inputs: grayscale 48x48 scaled to [0, 1], or the study's Canny edge maps.

Edge maps follow the first author's public code: resize to 48x48 (optionally upsample x2 first),
GaussianBlur 3x3 with sigma 0, convertScaleAbs, Canny(50, 150), back to 48x48, /255. Edge maps are
mostly zeros, which is why they cut spike counts on Loihi; ``input_sparsity`` reports that fraction.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from edgefer.data.dataset import IMAGE_SIZE
from edgefer.errors import EdgeferError

InputMode = Literal["gray", "edges", "edges-x2"]
INPUT_MODES: tuple[str, ...] = ("gray", "edges", "edges-x2")
CANNY_LOW, CANNY_HIGH = 50, 150


def to_gray(image: np.ndarray, source: str | None = None) -> np.ndarray:
    """Any OpenCV image (gray, BGR, BGRA; uint8 or uint16) to uint8 grayscale."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise EdgeferError(f"expected a grayscale or colour image, got an array of shape {image.shape}", source)
    if image.dtype == np.uint16:
        image = (image / 257).round().astype(np.uint8)
    if image.dtype != np.uint8:
        raise EdgeferError(f"expected 8- or 16-bit pixels, got {image.dtype}", source)
    return image


def resize_face(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    if gray.shape == (size, size):
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def edge_map(gray: np.ndarray, upsample: bool = False) -> np.ndarray:
    """The study's Canny edge map of one uint8 face, as uint8 (0 or 255 unless upsampled)."""
    face = resize_face(gray)
    if upsample:
        face = cv2.resize(face, (2 * IMAGE_SIZE, 2 * IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.convertScaleAbs(cv2.GaussianBlur(face, (3, 3), 0))
    edges = cv2.Canny(blurred, CANNY_LOW, CANNY_HIGH)
    return resize_face(edges)


def prepare_input(images: np.ndarray, mode: str = "gray") -> np.ndarray:
    """uint8 faces N x 48 x 48 -> float32 model input N x 1 x 48 x 48 in [0, 1]."""
    if mode not in INPUT_MODES:
        raise EdgeferError(f"unknown input mode {mode!r}; choose one of {', '.join(INPUT_MODES)}")
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise EdgeferError(f"expected faces N x {IMAGE_SIZE} x {IMAGE_SIZE}, got shape {images.shape}")
    if mode != "gray":
        upsample = mode == "edges-x2"
        images = np.stack([edge_map(face, upsample) for face in images]) if len(images) else images
    return (images.astype(np.float32) / 255.0)[:, None]


def input_sparsity(x: np.ndarray) -> float:
    """Fraction of exactly-zero pixels: what rate coding turns into silent inputs."""
    return float(np.mean(np.asarray(x) == 0))
