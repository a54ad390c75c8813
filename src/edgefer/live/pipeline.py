"""The real-time pipeline: decode -> detect (every N frames) -> reuse boxes -> crop (framed as the
model's training data) -> preprocess (the model's input mode) -> classify (all faces of a frame in
one call) -> smooth per face -> annotated video / JSON lines / window, and a summary with per-stage
latencies.

Decoding runs in a reader thread (OpenCV releases the GIL while decoding), so on two cores it
overlaps with detection and classification; the reported FPS is end to end, decode included.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgefer.data.faces import (DEFAULT_DETECTOR, DETECTORS, FRAMING_KEYS, Box, Framing, crop_face, detect_photo,
                                get_detector)
from edgefer.data.framing import model_framings
from edgefer.data.loaders import IMAGE_SUFFIXES
from edgefer.data.preprocess import prepare_input
from edgefer.errors import EdgeferError, output_folder
from edgefer.live.backends import BACKENDS, Classifier, make_classifier
from edgefer.live.sources import Frame, FrameSource, open_source
from edgefer.live.tracking import FaceTracker, Track, detect_frame

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
STAGES = ("decode", "detect", "crop", "classify", "smooth", "annotate", "write", "frame")
WINDOW = "edgefer live"


@dataclass
class LiveConfig:
    model: str = "fer2013-cnn"
    backend: str = "auto"  # onnxruntime when installed, else torch
    threads: int | None = None  # classifier threads; None: the backend's default
    detector: str = DEFAULT_DETECTOR  # blazeface | blazeface-full | blazeface-short | haar (edgefer.data.faces)
    detect_every: int = 8  # run the face detector on every N-th frame, reuse boxes in between
    detect_width: int | None = 256  # Haar only: width of the grey copy it sees (None: full frame)
    detect_scale_factor: float = 1.15  # Haar pyramid step: 1.1 finds a little more, 1.2 is faster
    margin: float = 0.0  # extra crop margin per side, as a fraction of the calibrated crop
    # Rotate each crop so that the eyes are level (detectors that find eyes): off by default, as on
    # the annotated clips it changed little (benchmarks/live_labels.py) and costs ~0.3 ms per face.
    align: bool = False
    smoothing: float = 0.6  # weight of the past in each face's moving average of probabilities
    max_missed: int = 2  # detection rounds a face may go unseen before its track ends
    max_frames: int | None = None
    out: Path | None = None  # annotated video (.mp4 .avi ...), one image (.jpg ...), or a folder
    jsonl: Path | None = None
    show: bool | None = None  # None: a window only when a display exists


@dataclass
class FaceResult:
    track: int
    box: Box
    label: str
    confidence: float
    probs: np.ndarray  # smoothed
    raw_probs: np.ndarray


@dataclass
class StageTimes:
    seconds: dict = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, stage: str, seconds: float) -> None:
        self.seconds.setdefault(stage, []).append(seconds)  # other pipelines time other stages

    def summary_ms(self) -> dict:
        out = {}
        for stage, values in self.seconds.items():
            if values:
                arr = 1000.0 * np.asarray(values)
                out[stage] = {"median": round(float(np.median(arr)), 3), "p90": round(float(np.percentile(arr, 90)), 3),
                              "n": len(values)}
        return out


# --- outputs --------------------------------------------------------------------------------------

def display_available() -> bool:
    """A window can be opened: a display server (on Linux) and an OpenCV build with a GUI backend."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:  # opencv-python-headless has no GUI backend
        return False
    return True


class AnnotatedOutput:
    """Annotated frames to a video file, a single image, or a folder of images (chosen by ``path``)."""

    def __init__(self, path: Path, fps: float | None, frames_expected_one: bool):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix in VIDEO_FOURCC:
            self.kind = "video"
        elif suffix in IMAGE_SUFFIXES:
            if not frames_expected_one:
                raise EdgeferError("an image file holds one frame; write a video (.mp4, .avi) or a folder", self.path)
            self.kind = "image"
        elif suffix == "":
            self.kind = "folder"
        else:
            raise EdgeferError(f"unknown output type {suffix!r}: use {', '.join(VIDEO_FOURCC)}, an image suffix, "
                               "or a folder", self.path)
        output_folder(self.path if self.kind == "folder" else self.path.parent)
        # A video or image is written under a temporary name and moved into place by close(): a failed
        # run leaves any earlier file of that name as it was.
        self.writing = partial_path(self.path) if self.kind != "folder" else self.path
        self.fps = fps or 25.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.written = 0

    def write(self, image: np.ndarray, frame: Frame) -> None:
        if self.kind == "video":
            if self.writer is None:
                self.size = (image.shape[1], image.shape[0])
                self.writer = cv2.VideoWriter(str(self.writing), cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()]),
                                              self.fps, self.size)
                if not self.writer.isOpened():
                    raise EdgeferError("cannot open a video writer for this file (codec or permission)", self.path)
            if (image.shape[1], image.shape[0]) != self.size:  # image sequences of mixed sizes
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            self.writer.write(image)
        else:
            target = self.writing if self.kind == "image" else self.path / _frame_file_name(frame)
            if not cv2.imwrite(str(target), image):
                raise EdgeferError("could not write the annotated image", target)
        self.written += 1

    def close(self, commit: bool = True) -> None:
        """Finish the file: moved into place (``commit``), or dropped after a failed run."""
        if self.writer is not None:
            self.writer.release()
        if self.kind != "folder" and self.writing.exists():
            if commit:
                os.replace(self.writing, self.path)
            else:
                self.writing.unlink()


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete (same folder, same suffix, hidden)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def refuse_overwriting_inputs(source, outputs: dict[str, Path | None]) -> None:
    """An output that is one of the source's files, or lies inside its input folder, would destroy or
    pollute the input: refused before anything is opened for writing."""
    inputs = {Path(p).resolve() for p in source.inputs}
    folder = source.input_folder.resolve() if source.input_folder is not None else None
    for flag, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in inputs:
            raise EdgeferError(f"{flag} is the input itself: writing it would destroy the input", path)
        if folder is not None and (resolved == folder or folder in resolved.parents):
            raise EdgeferError(f"{flag} lies inside the input folder {folder}: choose a place outside it", path)


def _frame_file_name(frame: Frame) -> str:
    if frame.name:
        return Path(frame.name).stem + ".jpg"
    return f"frame_{frame.index:06d}.jpg"


def annotate(image: np.ndarray, faces: list[FaceResult], fps: float | None) -> np.ndarray:
    canvas = image.copy()
    scale = max(0.4, min(canvas.shape[:2]) / 720)
    thick = max(1, int(round(2 * scale)))
    for face in faces:
        x, y, w, h = face.box
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 220, 0), thick)
        text = f"{face.label} {face.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        top = max(0, y - th - base - 4)
        cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + base + 4), (0, 220, 0), cv2.FILLED)
        cv2.putText(canvas, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(canvas, f"{fps:.1f} FPS", (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale,
                    (0, 255, 255), thick, cv2.LINE_AA)
    return canvas


def _jsonl_record(frame: Frame, faces: list[FaceResult], classes) -> dict:
    record = {"frame": frame.index, "time": round(frame.time_s, 4)}
    if frame.name:
        record["image"] = frame.name  # the photo's path as given (folder or glob + file name)
    record["faces"] = [
        {"track": f.track, "box": [int(v) for v in f.box], "label": f.label, "confidence": round(f.confidence, 4),
         "probabilities": {c: round(float(p), 4) for c, p in zip(classes, f.probs)},
         "raw_probabilities": {c: round(float(p), 4) for c, p in zip(classes, f.raw_probs)}}
        for f in faces
    ]
    return record


# --- the pipeline ---------------------------------------------------------------------------------

class LivePipeline:
    """Per-frame processing (no I/O): feed frames in order with ``process``."""

    def __init__(self, classifier: Classifier, input_mode: str, config: LiveConfig, still_images: bool = False):
        if config.detect_every < 1:
            raise EdgeferError("--detect-every must be at least 1")
        if not 0.0 <= config.smoothing < 1.0:
            raise EdgeferError("--smoothing must be in [0, 1)")
        if not 1.01 <= config.detect_scale_factor <= 2.0:
            raise EdgeferError("--detect-scale-factor must be in [1.01, 2]")
        if config.margin < 0:
            raise EdgeferError("--margin must be >= 0")
        if config.detector not in DETECTORS:
            raise EdgeferError(f"unknown face detector {config.detector!r}; choose one of {', '.join(DETECTORS)}")
        self.detector = get_detector(config.detector, config.detect_scale_factor)
        # The crop frames a face as the model's training data did (fitted per detector model; the
        # box as is where the card has no fit), widened by --margin.
        fitted = model_framings(classifier.model.info)
        self.framings = {name: Framing(f.scale * (1 + 2 * config.margin), f.dx, f.dy)
                         for name in FRAMING_KEYS for f in [fitted.get(name, Framing())]}
        self.classifier = classifier
        self.input_mode = input_mode
        self.config = config
        self.still_images = still_images  # photos are unrelated: detect each, no tracks, no smoothing
        self.tracker = FaceTracker(config.max_missed, 0.0 if still_images else config.smoothing)
        self.times = StageTimes()
        self.frames_since_detection = None
        self.detections_run = 0
        self.track_ids: set[int] = set()

    def process(self, frame: Frame) -> list[FaceResult]:
        times, clock = self.times, time.perf_counter
        t1 = clock()
        if self.still_images:
            self.tracker.reset()
        due = self.frames_since_detection is None or self.frames_since_detection + 1 >= self.config.detect_every
        if self.still_images or due or any(t.uncertain for t in self.tracker.tracks):
            if self.still_images:
                found = detect_photo(frame.image, self.detector)
            else:
                found = detect_frame(self.detector, frame.image, self.config.detect_width)
            self.tracker.update(found)
            self.frames_since_detection = 0
            self.detections_run += 1
            t2 = clock()
            times.add("detect", t2 - t1)
        else:
            self.frames_since_detection += 1
            t2 = t1
        # A photo has no next frame to confirm a face in: every face found is reported.
        tracks: list[Track] = [t for t in self.tracker.tracks if self.still_images or not t.tentative]
        faces: list[FaceResult] = []
        if tracks:
            # Cropped from the colour frame: only the faces' pixels are converted to grey.
            crops = np.stack([crop_face(frame.image, t.face, self.framings[t.model], self.config.align)
                              for t in tracks])
            inputs = prepare_input(crops, self.input_mode)
            t3 = clock()
            times.add("crop", t3 - t2)
            raw = self.classifier.predict_proba(inputs)  # every face of the frame in one call
            t4 = clock()
            times.add("classify", t4 - t3)
            classes = self.classifier.classes
            for track, probs in zip(tracks, raw):
                smoothed = self.tracker.smooth(track, probs)
                best = int(np.argmax(smoothed))
                faces.append(FaceResult(track.id, track.box, classes[best], float(smoothed[best]), smoothed, probs))
                self.track_ids.add(track.id)
            times.add("smooth", clock() - t4)
        return faces


def _read_ahead(source: FrameSource, frames: queue.Queue, stop: threading.Event, dropped: list) -> None:
    """Reader thread: decode frames into a small queue; ends with None (or the exception it hit).

    Files wait for the consumer. A camera does not wait: when the consumer falls behind, the oldest
    queued frame is dropped (and counted), so the output stays close to real time.
    """
    iterator = iter(source)
    live = source.kind == "camera"
    item: object = None
    try:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                frame = next(iterator)
            except StopIteration:
                break
            decode_s = time.perf_counter() - start
            while not stop.is_set():
                try:
                    frames.put((frame, decode_s), timeout=0.1)
                    break
                except queue.Full:
                    if live:
                        try:
                            frames.get_nowait()
                            dropped[0] += 1
                        except queue.Empty:
                            pass
    except BaseException as exc:  # handed to the main thread, which raises it
        item = exc
    while not stop.is_set():
        try:
            frames.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def run_live(source_spec: str, config: LiveConfig | None = None,
             on_frame: Callable[[Frame, list[FaceResult]], None] | None = None) -> dict:
    """Run the pipeline over a source and return the summary (see ``format_summary``)."""
    from edgefer.nn.zoo import load_model

    config = config or LiveConfig()
    if config.backend not in BACKENDS:
        raise EdgeferError(f"unknown backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    if config.max_frames is not None and config.max_frames < 1:
        raise EdgeferError("--max-frames must be at least 1")
    setup_start = time.perf_counter()
    source = open_source(source_spec)
    output, jsonl, show = None, None, False
    committed = False
    try:
        refuse_overwriting_inputs(source, {"--out": config.out, "--jsonl": config.jsonl})
        still = source.kind == "images"
        if config.out is not None:
            single = still and len(getattr(source, "files", [])) == 1
            output = AnnotatedOutput(config.out, source.fps, single)
        model = load_model(config.model)
        classifier = make_classifier(model, config.backend, config.threads)
        if config.jsonl is not None:
            try:
                Path(config.jsonl).parent.mkdir(parents=True, exist_ok=True)
                jsonl = open(partial_path(Path(config.jsonl)), "w", encoding="utf-8")
            except OSError as exc:
                raise EdgeferError(f"cannot write the JSON lines file ({exc.strerror})", config.jsonl) from None
        pipeline = LivePipeline(classifier, model.input_mode, config, still)
        show = display_available() if config.show is None else (config.show and display_available())
        if config.show and not show:
            sys.stderr.write("warning: no display (or a headless OpenCV build): running without a window\n")
        setup_s = time.perf_counter() - setup_start
        summary = _run_loop(source, pipeline, config, output, jsonl, show, on_frame)
        committed = True
    finally:
        source.close()
        if output is not None:
            output.close(commit=committed)
        if jsonl is not None:
            jsonl.close()
            if committed:
                os.replace(jsonl.name, config.jsonl)
            else:
                Path(jsonl.name).unlink(missing_ok=True)
        if show:
            cv2.destroyWindow(WINDOW)
    summary.update({"source": str(source_spec), "kind": source.kind, "model": config.model,
                    "backend": classifier.name, "input": model.input_mode, "setup_s": round(setup_s, 3),
                    "detector": config.detector, "align": config.align,
                    "detect_every": 1 if still else config.detect_every,
                    "detect_width": config.detect_width if config.detector == "haar" else None,
                    "out": str(config.out) if config.out else None, "jsonl": str(config.jsonl) if config.jsonl else None})
    return summary


def _run_loop(source, pipeline: LivePipeline, config: LiveConfig, output, jsonl, show, on_frame) -> dict:
    times = pipeline.times
    frames: queue.Queue = queue.Queue(maxsize=2 if source.kind == "camera" else 8)
    stop = threading.Event()
    dropped = [0]
    start, cpu_start = time.perf_counter(), time.process_time()
    reader = threading.Thread(target=_read_ahead, args=(source, frames, stop, dropped), name="edgefer-decode", daemon=True)
    reader.start()
    processed = frames_with_face = faces_total = 0
    labels: Counter = Counter()
    interrupted = False
    try:
        while True:
            item = frames.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            frame, decode_s = item
            times.add("decode", decode_s)
            t0 = time.perf_counter()
            faces = pipeline.process(frame)
            processed += 1
            faces_total += len(faces)
            frames_with_face += bool(faces)
            labels.update(f.label for f in faces)
            t1 = time.perf_counter()
            if output is not None or show:
                fps_so_far = processed / max(t1 - start, 1e-9)
                canvas = annotate(frame.image, faces, None if pipeline.still_images else fps_so_far)
                t2 = time.perf_counter()
                times.add("annotate", t2 - t1)
                t1 = t2
            if output is not None or jsonl is not None:
                if output is not None:
                    output.write(canvas, frame)
                if jsonl is not None:
                    jsonl.write(json.dumps(_jsonl_record(frame, faces, pipeline.classifier.classes)) + "\n")
                t2 = time.perf_counter()
                times.add("write", t2 - t1)
                t1 = t2
            if show:
                cv2.imshow(WINDOW, canvas)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            if on_frame is not None:
                on_frame(frame, faces)
            times.add("frame", time.perf_counter() - t0)
            if config.max_frames is not None and processed >= config.max_frames:
                break
    except KeyboardInterrupt:  # a camera runs until Ctrl-C: still report what was done
        interrupted = True
    finally:
        stop.set()
        reader.join(timeout=5)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start  # all threads of this process: what the run cost, whatever else runs
    return {
        "frames": processed,
        "broken_frames": source.broken,
        "missing_frames": source.missing,
        "dropped_frames": dropped[0],  # cameras only: frames skipped to keep up with real time
        "faces": faces_total,
        "frames_with_face": frames_with_face,
        "face_found_rate": round(frames_with_face / processed, 4) if processed else 0.0,
        "tracks": len(pipeline.track_ids),
        "detections_run": pipeline.detections_run,
        "labels": dict(labels.most_common()),
        "wall_s": round(wall, 4),
        "fps": round(processed / wall, 2) if wall > 0 else 0.0,
        "cpu_s": round(cpu, 3),
        "frames_per_cpu_s": round(processed / cpu, 2) if cpu > 0 else None,
        "latency_ms": times.summary_ms(),
        "interrupted": interrupted,
    }


def format_summary(summary: dict) -> str:
    """One line: frames, faces, fps, face-found rate, per-stage latency median/p90 in ms."""
    stages = ", ".join(f"{stage} {v['median']:.2f}/{v['p90']:.2f}" + (f" (x{v['n']})" if stage == "detect" else "")
                       for stage, v in summary["latency_ms"].items())
    stopped = "interrupted after " if summary.get("interrupted") else ""
    missing = f", {summary['missing_frames']} missing: the file ends early" if summary.get("missing_frames") else ""
    return (f"{stopped}{summary['frames']} frames ({summary['broken_frames']} broken{missing}), {summary['faces']} faces in "
            f"{summary['tracks']} tracks, face found in {100 * summary['face_found_rate']:.1f} % of frames, "
            f"{summary['fps']:.1f} fps end to end ({summary['backend']}, {summary['frames_per_cpu_s'] or 0:.1f} frames per "
            f"CPU-second); latency ms median/p90: {stages}")
