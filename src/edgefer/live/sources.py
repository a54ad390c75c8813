"""Frame sources: a video file, a camera, an image file, a folder or a glob of images.

Every source yields ``Frame``s (BGR uint8) and counts the frames it had to skip. Problems found
before the first frame (missing file, unreadable codec, camera not available, empty folder) raise
``EdgeferError`` naming the path; a frame that fails to decode later is skipped and counted.
"""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgefer.data.loaders import IMAGE_SUFFIXES
from edgefer.errors import EdgeferError

# A video read that fails is only an end of stream if this many reads after it fail too; a failure
# followed by a good frame was a broken frame. OpenCV cannot tell the two apart by itself.
MAX_CONSECUTIVE_FAILED_READS = 25


@dataclass
class Frame:
    index: int  # position in the source, counting skipped frames
    time_s: float  # media time for videos, seconds since start for cameras, 0 for photos
    image: np.ndarray  # BGR uint8, H x W x 3
    name: str | None = None  # file path (as the user gave it) for image sources


class FrameSource:
    """Iterable over frames; ``broken`` counts frames skipped because they could not be decoded."""

    kind = "source"
    fps: float | None = None  # nominal frame rate, when the source knows one
    inputs: tuple[Path, ...] = ()  # the files it reads (outputs must never be one of them)
    input_folder: Path | None = None  # the folder it reads, for a folder source

    def __init__(self, description: str):
        self.description = description
        self.broken = 0
        self.missing = 0  # frames a video's container declares that could not be read at its end

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def open_source(spec: str) -> FrameSource:
    """The source named by ``spec``: a camera index (``0``), a glob, a folder, an image or a video."""
    spec = str(spec)
    path = Path(spec)
    if spec.isdigit() and not path.exists():
        return CameraSource(int(spec))
    if _is_glob(spec) and not path.exists():
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeferError(f"no images match the pattern (looked for {', '.join(IMAGE_SUFFIXES)})", spec)
        return ImageSource(files, spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeferError(f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})", path)
        source = ImageSource(files, str(path))
        source.input_folder = path
        return source
    if not path.exists():
        raise EdgeferError("no such file, folder or camera", path)
    if not path.is_file():
        raise EdgeferError("not a regular file", path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], str(path), strict=True)
    return VideoSource(path)


def _decode_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return image if image is not None and image.size else None


class ImageSource(FrameSource):
    """Still images, one frame each; a corrupt image among several is skipped and counted."""

    kind = "images"

    def __init__(self, files: list[Path], description: str, strict: bool = False):
        super().__init__(description)
        self.files = files
        self.inputs = tuple(files)
        self.strict = strict
        first = _decode_image(files[0])  # fail early on a single bad photo
        if first is None and (strict or len(files) == 1):
            raise EdgeferError("not a readable image (corrupt or unsupported format)", files[0])
        self._first = first

    def __iter__(self) -> Iterator[Frame]:
        yielded = 0
        for index, path in enumerate(self.files):
            image = self._first if index == 0 else _decode_image(path)
            if image is None:
                self.broken += 1
                continue
            yielded += 1
            yield Frame(index, 0.0, image, str(path))  # the path as given; photos have no media time
        self._first = None
        if not yielded:
            raise EdgeferError(f"none of the {len(self.files)} images could be read", self.description)


class VideoSource(FrameSource):
    kind = "video"

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path
        self.inputs = (path,)
        # One decoder thread: as fast as FFmpeg's default of one per core on a 640x360 H.264 stream
        # (~1,100 fps here), and it leaves the other core to detection and classification.
        self.capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        if not self.capture.isOpened():
            self.capture.release()
            raise EdgeferError("not a readable video (corrupt file or unsupported codec)", path)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
        ok, first = self.capture.read()
        if not ok or first is None:
            self.capture.release()
            raise EdgeferError("video opened but no frame could be decoded (corrupt file or unsupported codec)", path)
        self._first = first

    def _time(self, index: int) -> float:
        msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        if msec and np.isfinite(msec) and msec > 0:
            return msec / 1000.0
        return index / self.fps if self.fps else float(index)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        yield Frame(0, 0.0, self._first)
        self._first = None
        failed_in_a_row = 0
        while failed_in_a_row < MAX_CONSECUTIVE_FAILED_READS:
            ok, image = self.capture.read()
            index += 1
            if not ok or image is None or image.size == 0:
                failed_in_a_row += 1
                continue
            self.broken += failed_in_a_row  # failures followed by a good frame were broken frames
            failed_in_a_row = 0
            yield Frame(index, self._time(index), image)
        # A file that ends early (truncated, a download cut short) stops decoding before the frame count
        # its container declares: those frames are missing, not merely the end of the video.
        declared = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        decoded_until = index - failed_in_a_row + 1
        # (A container's count can be an estimate off by a frame or two: only a real shortfall counts.)
        if declared and np.isfinite(declared) and declared - decoded_until > max(2, 0.01 * declared):
            self.missing = int(declared) - decoded_until

    def close(self) -> None:
        self.capture.release()


class CameraSource(FrameSource):
    """A camera by index; runs until the caller stops (``max_frames`` or Ctrl-C)."""

    kind = "camera"

    def __init__(self, index: int):
        super().__init__(f"camera {index}")
        # The capture backends warn about each missing device; our error says it once.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.capture = cv2.VideoCapture(index)
            ok, first = self.capture.read() if self.capture.isOpened() else (False, None)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not ok or first is None:
            self.capture.release()
            raise EdgeferError("not available (no such device, or it is busy)", f"camera {index}")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        self._first = first

    def __iter__(self) -> Iterator[Frame]:
        start = time.perf_counter()
        yield Frame(0, 0.0, self._first)
        self._first = None
        index, failed_in_a_row = 0, 0
        while failed_in_a_row < MAX_CONSECUTIVE_FAILED_READS:
            ok, image = self.capture.read()
            index += 1
            if not ok or image is None:
                failed_in_a_row += 1
                continue
            self.broken += failed_in_a_row
            failed_in_a_row = 0
            yield Frame(index, time.perf_counter() - start, image)

    def close(self) -> None:
        self.capture.release()
