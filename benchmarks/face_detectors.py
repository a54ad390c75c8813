"""The face detectors edgefer can use, compared on the shared photos and videos in one run.

Detectors: ``blazeface`` (edgefer's default: full range, short range where it finds nothing),
``blazeface-full``, ``blazeface-short``, OpenCV's ``haar`` cascade, and as a peer dlib's HOG
frontal-face detector (``pip install -c constraints.txt -e ".[detector-peers]"``; skipped without it). Per photo: faces found
(whole image plus tiles, as ``edgefer live`` and the loaders search photos). Per video, every frame
detected on its own (no tracking, so this is the raw detector): frames with a face, and the
detector's time per call (median and p90, one thread). The annotated face / no-face segments of
``benchmarks/live_labels.json`` give the face-found rate on face frames and the false-face rate on
no-face frames.

Not in the table: YuNet (``cv2.FaceDetectorYN``) needs a model file that no PyPI package carries
(detekface 0.1.0, alchemyface 1.2.0 and unicorner-face-detector 0.1.0 download it at run time).

Writes runs/bench/face_detectors.json and prints tables; timings are wall-clock on this machine.
    python benchmarks/face_detectors.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edgefer.data.faces import Face, FaceDetector, detect_photo, get_detector
from edgefer.data.loaders import default_data_roots

DETECTORS = ("blazeface", "blazeface-full", "blazeface-short", "haar", "dlib")
PHOTOS = ("single_face.jpg", "multi_face.jpg", "BWPictureHuman.jpg")
EXPECTED_FACES = {"single_face.jpg": 1, "multi_face.jpg": 5, "BWPictureHuman.jpg": 1}
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "no_face.mp4")
HAAR_WIDTH = 256  # as edgefer live runs Haar on video frames (dlib gets the same grey copy)


class DlibDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal-face detector, the image upsampled once (dlib's usual setting)."""

    name = "dlib"

    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()

    def detect(self, image):
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        rects = self.detector(gray, 1)
        return [Face((r.left(), r.top(), r.width(), r.height()), 1.0, None, self.name) for r in rects]


def make_detector(name: str) -> FaceDetector:
    return DlibDetector() if name == "dlib" else get_detector(name)


def available(name: str) -> bool:
    if name != "dlib":
        return True
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


def annotated_frames(labels: dict, video: str) -> tuple[set, set]:
    """(frames with a face, frames without) from the hand annotation, ambiguous segments included
    (ambiguity is about the expression, not about whether a face is there)."""
    segments = labels["videos"][f"video/{video}"]["segments"]
    face = {i for s in segments if s["label"] is not None for i in range(s["start"], s["end"] + 1)}
    no_face = {i for s in segments if s["label"] is None for i in range(s["start"], s["end"] + 1)}
    return face, no_face


def run_video(path: Path, name: str) -> tuple[list[bool], list[float]]:
    detector = make_detector(name)
    capture = cv2.VideoCapture(str(path))
    found, seconds = [], []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if name in ("haar", "dlib"):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            scale = HAAR_WIDTH / gray.shape[1]
            frame = cv2.resize(gray, (HAAR_WIDTH, round(gray.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        faces = detector.detect(frame)
        seconds.append(time.perf_counter() - start)
        found.append(bool(faces))
    capture.release()
    return found, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--labels", type=Path, default=Path(__file__).with_name("live_labels.json"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    data = args.data or next(r for r in default_data_roots() if (r / "images").is_dir())
    labels = json.loads(args.labels.read_text())
    load_before = os.getloadavg()
    result = {"photos": {}, "videos": {}, "source": "measured"}
    detectors = [name for name in DETECTORS if available(name)]
    for name in detectors:
        detector = make_detector(name)
        for photo in PHOTOS:
            image = cv2.imread(str(data / "images" / photo))
            start = time.perf_counter()
            faces = detect_photo(image, detector)
            result["photos"].setdefault(photo, {})[name] = {
                "faces": len(faces), "expected": EXPECTED_FACES[photo], "seconds": round(time.perf_counter() - start, 3),
                "boxes": [list(f.box) for f in faces]}
        for video in VIDEOS:
            found, seconds = run_video(data / "video" / video, name)
            face, no_face = annotated_frames(labels, video)
            ms = 1000 * np.array(seconds)
            result["videos"].setdefault(video, {})[name] = {
                "frames": len(found),
                "face_found_rate": round(np.mean([found[i] for i in face if i < len(found)]), 4) if face else None,
                "false_face_rate": round(np.mean([found[i] for i in no_face if i < len(found)]), 4) if no_face else None,
                "ms_per_call_median": round(float(np.median(ms)), 3), "ms_per_call_p90": round(float(np.percentile(ms, 90)), 3)}
    result["machine"] = {"cpus": os.cpu_count(), "load_average_before": [round(v, 2) for v in load_before],
                         "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "face_detectors.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    console = Console(width=200)
    photos = Table(title="faces found in the shared photos (whole image + tiles)")
    photos.add_column("photo")
    photos.add_column("expected", justify="right")
    for name in detectors:
        photos.add_column(name, justify="right")
    for photo, row in result["photos"].items():
        photos.add_row(photo, str(EXPECTED_FACES[photo]), *[f"{row[n]['faces']} ({row[n]['seconds']:.2f} s)" for n in detectors])
    console.print(photos)
    videos = Table(title="every frame detected on its own: face found on annotated face frames / false faces on "
                         "no-face frames / ms per call (median, p90)")
    videos.add_column("video")
    for name in detectors:
        videos.add_column(name, justify="right")
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for video, row in result["videos"].items():
        videos.add_row(video, *[f"{pct(row[n]['face_found_rate'])} / {pct(row[n]['false_face_rate'])} / "
                                f"{row[n]['ms_per_call_median']:.2f}, {row[n]['ms_per_call_p90']:.2f}" for n in detectors])
    console.print(videos)
    print(f"load {load_before[0]:.1f} before; wrote {path}")


if __name__ == "__main__":
    main()
