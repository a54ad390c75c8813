"""Face detection per frame, box reuse between detections, and per-face smoothing.

Detection is the costly stage, so it runs only every ``detect_every`` frames (BlazeFace letterboxes
the frame to its own input; Haar runs on a grey copy shrunk to ``detect_width`` pixels); in between,
each face track keeps its last box. Tracks are matched to new detections by overlap (IoU); a track
confirmed by two rounds survives ``max_missed`` rounds without a match (a detector misses a face now
and then), an unconfirmed one ends at its first miss (false positives rarely repeat). A new face
found with a score below ``CONFIRM_SCORE`` is tentative: it is not reported until a detection finds
it with a confident score. A new tentative face and a face just missed are searched for again on
the next frame, so a face is confirmed, or dropped when it has left, within a few frames. Tracks
carry an exponential moving average of class probabilities so the label does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgefer.data.faces import Box, Face, FaceDetector, HaarDetector

MATCH_IOU = 0.3
BOX_BLEND = 0.3  # weight of the previous box when a track is re-detected: damps the detector's jitter
# A face is reported in a video once one detection scored at least this (BlazeFace's rare false
# positives, e.g. on lettering, score 0.5-0.66 over a few frames; a real face's track reaches
# 0.75-0.97). A new face below it is searched for again on the next CONFIRM_ROUNDS - 1 frames.
CONFIRM_SCORE = 0.75
CONFIRM_ROUNDS = 3


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


def detect_frame(detector: FaceDetector, frame: np.ndarray, detect_width: int | None) -> list[Face]:
    """Faces of a BGR frame in full-frame pixels. Haar runs on a grey copy at most ``detect_width``
    wide (its cost grows with the pixels); BlazeFace letterboxes the frame to its input itself."""
    if not isinstance(detector, HaarDetector):
        return detector.detect(frame)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    width = gray.shape[1]
    scale = detect_width / width if detect_width and width > detect_width else 1.0
    small = gray if scale == 1.0 else cv2.resize(gray, (detect_width, max(1, round(gray.shape[0] * scale))),
                                                 interpolation=cv2.INTER_AREA)
    boxes = [tuple(int(round(v / scale)) for v in face.box) for face in detector.detect(small)]
    return [Face(box, model=detector.name) for box in suppress_nested(boxes)]


@dataclass
class Track:
    id: int
    box: Box
    eyes: tuple | None = None  # the latest detection's eye centres, when the detector gives them
    score: float = 1.0  # the best detection score seen
    model: str = "haar"  # the detector model whose box this is (it sets the crop framing)
    missed: int = 0  # detection rounds in a row that did not find this face
    hits: int = 1  # detection rounds that found it
    probs: np.ndarray | None = None  # smoothed class probabilities
    frames: int = 0  # frames in which this face was classified

    @property
    def tentative(self) -> bool:
        """Never yet detected with a confident score: not reported (in videos) until it is."""
        return self.score < CONFIRM_SCORE

    @property
    def uncertain(self) -> bool:
        """New and tentative, or just missed: the next frame is searched again (not in ``detect_every``
        frames), so a face is confirmed, and a face that left is dropped, within a few frames."""
        return (self.tentative and self.hits < CONFIRM_ROUNDS) or self.missed > 0

    @property
    def face(self) -> Face:
        return Face(self.box, self.score, self.eyes, self.model)


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

    def update(self, detections: list[Face | Box]) -> None:
        """Match a detection round to the tracks: greedy by IoU, largest overlaps first."""
        detections = [d if isinstance(d, Face) else Face(tuple(d)) for d in detections]
        pairs = sorted(((iou(t.box, d.box), ti, di) for ti, t in enumerate(self.tracks) for di, d in enumerate(detections)),
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
            found = detections[di]
            shift = [(1 - BOX_BLEND) * (n - o) for o, n in zip(track.box, found.box)]
            track.box = tuple(int(round(o + d)) for o, d in zip(track.box, shift))
            # The eyes move with the blended box (same shift of the box centre).
            if found.eyes is not None:
                offset = (track.box[0] + track.box[2] / 2 - found.box[0] - found.box[2] / 2,
                          track.box[1] + track.box[3] / 2 - found.box[1] - found.box[3] / 2)
                track.eyes = tuple((ex + offset[0], ey + offset[1]) for ex, ey in found.eyes)
            track.score = max(track.score, found.score)
            track.model = found.model
            track.missed = 0
            track.hits += 1
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        # A face seen in one round only may be a false positive: it gets no grace when it is missed.
        self.tracks = [t for t in self.tracks if t.missed == 0 or (t.hits > 1 and t.missed <= self.max_missed)]
        for di, found in enumerate(detections):
            if di not in used_dets:
                self.tracks.append(Track(self.next_id, tuple(int(v) for v in found.box), found.eyes, found.score, found.model))
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
