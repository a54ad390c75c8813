"""Face detection on a downscaled frame, box reuse between detections, and per-face smoothing.

Haar detection is the costly stage, so it runs on a grey frame shrunk to ``detect_width`` pixels
and only every ``detect_every`` frames; in between, each face track keeps its last box. Tracks are
matched to new detections by overlap (IoU); a track confirmed by two rounds survives ``max_missed``
rounds without a match (Haar misses a face now and then), an unconfirmed one ends at its first miss
(Haar's false positives rarely repeat). Tracks carry an exponential moving average of class probabilities
so the label does not flicker from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgefer.data.faces import Box, detect_faces

MATCH_IOU = 0.3
BOX_BLEND = 0.3  # weight of the previous box when a track is re-detected: damps Haar's jitter


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter)


def suppress_nested(boxes: list[Box], overlap: float = 0.5) -> list[Box]:
    """Drop a box that lies mostly inside a larger one: Haar's typical false positive on a face."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        x, y, w, h = box
        inside = False
        for kx, ky, kw, kh in kept:
            iw = min(x + w, kx + kw) - max(x, kx)
            ih = min(y + h, ky + kh) - max(y, ky)
            if iw > 0 and ih > 0 and iw * ih >= overlap * w * h:
                inside = True
                break
        if not inside:
            kept.append(box)
    return kept


def detect_scaled(gray: np.ndarray, detect_width: int | None, scale_factor: float = 1.1) -> list[Box]:
    """Haar faces of ``gray`` found on a copy at most ``detect_width`` wide, in full-frame pixels."""
    width = gray.shape[1]
    scale = detect_width / width if detect_width and width > detect_width else 1.0
    small = gray if scale == 1.0 else cv2.resize(gray, (detect_width, max(1, round(gray.shape[0] * scale))),
                                                 interpolation=cv2.INTER_AREA)
    boxes = [tuple(int(round(v / scale)) for v in box) for box in detect_faces(small, scale_factor=scale_factor)]
    return suppress_nested(boxes)


@dataclass
class Track:
    id: int
    box: Box
    missed: int = 0  # detection rounds in a row that did not find this face
    hits: int = 1  # detection rounds that found it
    probs: np.ndarray | None = None  # smoothed class probabilities
    frames: int = 0  # frames in which this face was classified


class FaceTracker:
    def __init__(self, max_missed: int = 2, smoothing: float = 0.6):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        self.max_missed = max_missed
        self.smoothing = smoothing
        self.tracks: list[Track] = []
        self.next_id = 0

    def reset(self) -> None:
        self.tracks = []

    def update(self, detections: list[Box]) -> None:
        """Match a detection round to the tracks: greedy by IoU, largest overlaps first."""
        pairs = sorted(((iou(t.box, d), ti, di) for ti, t in enumerate(self.tracks) for di, d in enumerate(detections)),
                       reverse=True)
        used_tracks, used_dets = set(), set()
        for overlap, ti, di in pairs:
            if overlap < MATCH_IOU:
                break
            if ti in used_tracks or di in used_dets:
                continue
            used_tracks.add(ti)
            used_dets.add(di)
            track = self.tracks[ti]
            track.box = tuple(int(round(BOX_BLEND * o + (1 - BOX_BLEND) * n)) for o, n in zip(track.box, detections[di]))
            track.missed = 0
            track.hits += 1
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        # A face seen in one round only may be a false positive: it gets no grace when it is missed.
        self.tracks = [t for t in self.tracks if t.missed == 0 or (t.hits > 1 and t.missed <= self.max_missed)]
        for di, box in enumerate(detections):
            if di not in used_dets:
                self.tracks.append(Track(self.next_id, tuple(int(v) for v in box)))
                self.next_id += 1
        self.tracks.sort(key=lambda t: t.box[2] * t.box[3], reverse=True)

    def smooth(self, track: Track, probs: np.ndarray) -> np.ndarray:
        """Exponential moving average of a track's class probabilities; the first frame is taken as is."""
        if track.probs is None:
            track.probs = probs.astype(np.float64)
        else:
            track.probs = self.smoothing * track.probs + (1.0 - self.smoothing) * probs
        track.frames += 1
        return track.probs
