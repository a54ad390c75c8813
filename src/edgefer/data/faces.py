"""Face detection and cropping with OpenCV's Haar cascade (ships inside opencv-python-headless)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edgefer.data.preprocess import resize_face
from edgefer.errors import EdgeferError

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise EdgeferError("OpenCV's Haar face cascade could not be loaded", path)
    return cascade


def detect_faces(gray: np.ndarray, min_size: int | None = None, scale_factor: float = 1.1) -> list[Box]:
    """Frontal faces in a uint8 grayscale image, largest first. ``scale_factor`` is the Haar
    pyramid step: 1.1 finds a little more, 1.2 is faster."""
    if min_size is None:
        min_size = max(24, min(gray.shape) // 12)
    found = _cascade().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=scale_factor, minNeighbors=5, minSize=(min_size, min_size)
    )
    boxes = [tuple(int(v) for v in b) for b in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def crop_face(gray: np.ndarray, box: Box, margin: float = 0.0) -> np.ndarray:
    """Square crop around ``box`` grown by ``margin`` of its size per side, clipped, resized to 48x48."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(round(min(max(cx - side / 2, 0), max(gray.shape[1] - side, 0))))
    y0 = int(round(min(max(cy - side / 2, 0), max(gray.shape[0] - side, 0))))
    return resize_face(gray[y0 : y0 + side, x0 : x0 + side])


def face_from_photo(gray: np.ndarray, source: str | None = None) -> np.ndarray:
    """The largest face of a photo, as a 48x48 crop; an error naming the file when there is none."""
    boxes = detect_faces(gray)
    if not boxes:
        raise EdgeferError("no face found in the image", source)
    return crop_face(gray, boxes[0])
