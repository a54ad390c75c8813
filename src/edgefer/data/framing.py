"""Crop framing calibrated to the training data: where, relative to a detector's box, the 48x48
crop must lie so that a live face is framed as the dataset frames its faces.

A dataset's images are already face crops. Each sampled image is enlarged, set in the middle of a
canvas with room around it, and given to the detector; the image's own square is then the crop
the model expects, so its side and centre relative to the detected box are one measurement of the
framing. The median over the sample is the framing; the spread around it is the detector's noise,
which the training augmentation must cover (``edgefer.nn.train``: crop scale and offset).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefer.data.faces import Face, FaceDetector, Framing
from edgefer.errors import EdgeferError

UPSCALE = 4  # 48 -> 192 px: the size of a near face in a video frame
CANVAS_MARGIN = 0.5  # room around the face image, per side, as a fraction of its side
CANVAS_GRAY = 128


def place_on_canvas(face: np.ndarray, upscale: int = UPSCALE, margin: float = CANVAS_MARGIN) -> tuple[np.ndarray, int, int]:
    """A dataset face enlarged ``upscale`` times in the middle of a mid-grey canvas: (canvas, offset, side)."""
    side = face.shape[0] * upscale
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = int(round(side * margin))
    canvas = np.full((side + 2 * pad, side + 2 * pad), CANVAS_GRAY, np.uint8)
    canvas[pad : pad + side, pad : pad + side] = big
    return canvas, pad, side


def framing_of(face: Face, offset: float, side: float) -> tuple[float, float, float]:
    """(scale, dx, dy) that map a detected box onto the square [offset, offset + side)^2."""
    x, y, w, h = face.box
    box_side = (w + h) / 2
    centre = offset + side / 2
    return side / box_side, (centre - (x + w / 2)) / box_side, (centre - (y + h / 2)) / box_side


def fit_framing(images: np.ndarray, detector: FaceDetector, sample: int = 2000, seed: int = 0) -> dict:
    """Fit a detector's framing on dataset faces (uint8 N x 48 x 48): the median (scale, dx, dy) over
    a random sample, the detection rate and the spread (quartiles) of each."""
    if len(images) == 0:
        raise EdgeferError("no images to calibrate the crop framing on")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(sample, len(images)), replace=False)
    measured = []
    for index in chosen:
        canvas, offset, side = place_on_canvas(images[index])
        faces = detector.detect(canvas)
        centre = offset + side / 2
        inside = [f for f in faces if abs(f.box[0] + f.box[2] / 2 - centre) < side / 2
                  and abs(f.box[1] + f.box[3] / 2 - centre) < side / 2]
        if inside:
            best = max(inside, key=lambda f: f.score)
            measured.append((*framing_of(best, offset, side), best.eye_angle))
    if not measured:
        raise EdgeferError(f"the {detector.name} detector found no face in {len(chosen)} dataset images")
    values = np.array(measured)
    median = np.median(values, axis=0)
    quartiles = np.percentile(values, [25, 75], axis=0)
    framing = Framing(*(round(float(v), 4) for v in median[:3]))
    return {
        **framing.to_dict(),
        "detector": detector.name,
        "images": int(len(chosen)),
        "found": int(len(values)),
        "found_rate": round(len(values) / len(chosen), 4),
        "quartiles": {name: [round(float(q), 4) for q in quartiles[:, i]]
                      for i, name in enumerate(("scale", "dx", "dy", "eye_angle"))},
        "method": f"dataset faces x{UPSCALE} on a mid-grey canvas ({CANVAS_MARGIN:.0%} margin per side), "
                  f"median over a random sample (seed {seed})",
    }


def model_framings(info: dict) -> dict[str, Framing]:
    """The framings a model's card records, per detector model (``Face.model``); a detector model
    without one crops its box as is."""
    return {name: Framing.from_dict(fitted) for name, fitted in (info.get("framing") or {}).items()}
