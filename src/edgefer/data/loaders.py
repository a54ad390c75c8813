"""Loaders for the FER datasets in the formats users actually have.

Every loader returns a ``FaceDataset`` (uint8 N x 48 x 48, int labels, canonical class names):
- the npz files of ../shared/data (``images``, ``labels`` int or one-hot, ``classes``),
- the original Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``),
- image folders ``ROOT/<class>/*.png|jpg`` (CK+48, the FER2013 ``train/``/``test/`` re-packaging),
  including raw photos of any size, whose largest face is detected, cropped and resized.
Named datasets (``ckplus``, ``fer2013``) resolve against a data root: explicit, else
``$EDGEFER_DATA``, else ``../shared/data`` next to the checkout.
"""

from __future__ import annotations

import csv
import os
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from edgefer.data.dataset import IMAGE_SIZE, FaceDataset
from edgefer.data.faces import Framing, face_from_photo
from edgefer.data.labels import CANONICAL, FER2013_CLASSES, canonical_classes, canonical_label
from edgefer.data.datasets import get_dataset, is_named
from edgefer.data.preprocess import to_gray
from edgefer.errors import EdgeferError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test", "private-test")
_CSV_USAGE = {"train": "Training", "test": "PublicTest", "private-test": "PrivateTest"}

def default_data_roots() -> list[Path]:
    """Where named datasets are looked for: ``$EDGEFER_DATA`` alone when set, else ../shared/data."""
    if os.environ.get("EDGEFER_DATA"):
        return [Path(os.environ["EDGEFER_DATA"]).resolve()]
    roots = []
    checkout = Path(__file__).resolve().parents[3]
    roots += [checkout.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return list(dict.fromkeys(p.resolve() for p in roots))


def resolve_named(name: str, split: str | None, data_root: str | Path | None = None) -> Path:
    spec = get_dataset(name)
    files = spec.files
    key = split if split in files else None
    if key not in files:
        key = "test" if "test" in files else next(iter(files))
    roots = [Path(data_root)] if data_root is not None else default_data_roots()
    for root in roots:
        candidate = root / files[key]
        if candidate.exists():
            return candidate
    looked = ", ".join(str(r / files[key]) for r in roots)
    raise EdgeferError(
        f"dataset {name!r} not found; looked at {looked}. Get {spec.how_to_get}, "
        "or set EDGEFER_DATA to the folder holding it."
    )


def default_split(data: str | Path, purpose: str = "evaluation") -> str | None:
    """The split a command reads when the user names none: a named dataset's official test (or train) split;
    for evaluation, the test usage of a Kaggle csv or train/test folder; else everything (None)."""
    if is_named(data):
        spec = get_dataset(str(data))
        return spec.evaluation_split if purpose == "evaluation" else spec.training_split
    if purpose == "evaluation" and (Path(data).suffix.lower() == ".csv" or Path(data).is_dir()):
        return "test"
    return None


def load_dataset(
    spec: str | Path, split: str | None = None, data_root: str | Path | None = None,
    framings: dict[str, Framing] | None = None,
) -> FaceDataset:
    """Load a named dataset (``ckplus``, ``fer2013``) or a file / folder in any supported format.

    ``split`` (train | test | private-test) picks a usage of datasets that have official splits
    (Kaggle csv, train/test folders, named fer2013); it is ignored for single-split data.
    ``framings`` (a model card's, see ``edgefer.data.framing``) place the crops of photos in folders.
    """
    if split is not None and split not in SPLITS:
        raise EdgeferError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if is_named(spec):
        path = resolve_named(str(spec), split, data_root)
    else:
        path = Path(spec)
    if not path.exists():
        raise EdgeferError("no such file or folder", path)
    if path.is_dir():
        return load_image_folder(_split_folder(path, split), framings)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".csv":
        return load_kaggle_csv(path, usage=split)
    raise EdgeferError("unsupported dataset format; expected .npz, .csv or an image folder", path)


def _require(path: Path, kind: str = "file") -> None:
    if not (path.is_file() if kind == "file" else path.is_dir()):
        raise EdgeferError(f"no such {kind}", path)


def load_npz(path: str | Path) -> FaceDataset:
    path = Path(path)
    _require(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise EdgeferError("holds a single array, not an npz archive of images and labels", path)
        with npz:
            missing = {"images", "labels"} - set(npz.files)
            if missing:
                raise EdgeferError(f"npz lacks the array(s) {sorted(missing)}; it has {npz.files}", path)
            images, labels = npz["images"], npz["labels"]
            classes = npz["classes"] if "classes" in npz.files else None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, EdgeferError):
            raise
        raise EdgeferError(f"not a readable npz file ({exc})", path) from None
    if classes is not None and classes.ndim != 1:
        raise EdgeferError(f"'classes' must be a 1-D array of class names, got shape {classes.shape}", path)
    names = None if classes is None else [str(c) for c in classes]
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise EdgeferError(f"images must be N x {IMAGE_SIZE} x {IMAGE_SIZE}, got shape {images.shape}", path)
    if not (np.issubdtype(images.dtype, np.number) and np.issubdtype(labels.dtype, np.number)):
        raise EdgeferError(f"images ({images.dtype}) and labels ({labels.dtype}) must be numeric", path)
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
            raise EdgeferError("images contain NaN or infinite values", path)
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        # Pixel values are 0..255, or 0..1 for float images: anything else is not an image we can read.
        if low < 0 or high > 255:
            raise EdgeferError(f"pixel values span {low:g}..{high:g}, outside 0..255 (or 0..1 for float images)", path)
        if np.issubdtype(images.dtype, np.floating) and high <= 1.0:
            images = images * 255.0
        images = np.round(images).astype(np.uint8)
    if labels.ndim == 2:  # one-hot
        one_hot = labels.shape[0] == len(images) and np.isin(labels, (0, 1)).all() and np.all(labels.sum(axis=1) == 1)
        if not one_hot:
            raise EdgeferError(f"labels of shape {labels.shape} are not one-hot rows (one 1, the rest 0) for "
                               f"{len(images)} images", path)
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or len(labels) != len(images):
        raise EdgeferError(f"{len(images)} images but labels of shape {labels.shape}", path)
    if np.issubdtype(labels.dtype, np.floating) and not np.all(labels == np.round(labels)):
        raise EdgeferError("labels must be integers or one-hot rows", path)
    labels = labels.astype(np.int64)
    if names is None:
        if labels.size and labels.max() >= len(FER2013_CLASSES):
            raise EdgeferError(f"label {int(labels.max())} is out of range and the npz has no 'classes'", path)
        names = list(FER2013_CLASSES)
    return FaceDataset(images, labels, canonical_classes(names, str(path)), str(path))


def load_kaggle_csv(path: str | Path, usage: str | None = None) -> FaceDataset:
    """The original Kaggle fer2013.csv. ``usage``: train | test | private-test, or None for all rows."""
    path = Path(path)
    _require(path)
    wanted = _CSV_USAGE[usage] if usage is not None else None
    images, labels = [], []
    try:
        # utf-8-sig: Excel writes a byte-order mark before the header
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, strict=True)  # an unterminated quote is an error, not the rest of the file
            if reader.fieldnames is None or not {"emotion", "pixels"} <= set(reader.fieldnames):
                raise EdgeferError(
                    f"expected a header 'emotion,pixels[,Usage]', got {reader.fieldnames}", path
                )
            if wanted is not None and "Usage" not in reader.fieldnames:
                sys.stderr.write(f"warning: {path}: no Usage column, so the {usage} split cannot be picked: "
                                 "reading every row\n")
                wanted = None
            for row in reader:
                line = reader.line_num
                if wanted is not None and row.get("Usage") is not None and row["Usage"] != wanted:
                    continue
                try:
                    label = int(row["emotion"])
                    pixels = np.array(row["pixels"].split(), dtype=np.int64)
                except (ValueError, TypeError, AttributeError, OverflowError):  # TypeError: a field missing from the row
                    raise EdgeferError(f"line {line}: malformed row (emotion or pixels missing or not integers)", path) from None
                if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
                    raise EdgeferError(
                        f"line {line}: {pixels.size} pixels, expected {IMAGE_SIZE * IMAGE_SIZE}", path
                    )
                if not 0 <= label < len(FER2013_CLASSES):
                    raise EdgeferError(f"line {line}: emotion {label} is not in 0..{len(FER2013_CLASSES) - 1}", path)
                if pixels.min() < 0 or pixels.max() > 255:
                    raise EdgeferError(f"line {line}: pixel values outside 0..255", path)
                images.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
                labels.append(label)
    except UnicodeDecodeError:
        raise EdgeferError("not a text CSV file", path) from None
    except csv.Error as exc:
        raise EdgeferError(f"line {reader.line_num}: not valid CSV ({exc})", path) from None
    if not images:
        which = f" with Usage {wanted}" if wanted else ""
        raise EdgeferError(f"no rows{which}", path)
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), FER2013_CLASSES, str(path))


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 grayscale; a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeferError("no such image file", path)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise EdgeferError("not a readable image (corrupt or unsupported format)", path)
    return to_gray(image, str(path))


def face_image(path: str | Path, framings: dict[str, Framing] | None = None) -> np.ndarray:
    """A 48x48 face from an image file: a 48x48 image as is, otherwise its largest detected face
    (BlazeFace), cropped with ``framings``."""
    gray = read_image(path)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return gray
    return face_from_photo(gray, str(path), framings=framings)


def load_image_folder(root: str | Path, framings: dict[str, Framing] | None = None) -> FaceDataset:
    """``ROOT/<class>/*.png|jpg``: class folders in any common spelling, images of any size (the
    largest face of a photo is cropped with ``framings``)."""
    root = Path(root)
    _require(root, "folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise EdgeferError("no class folders (expected ROOT/<class>/*.png|jpg)", root)
    by_class = {}
    for folder in class_dirs:
        name = canonical_label(folder.name, str(folder))
        if name in by_class:
            raise EdgeferError(f"two folders name the class {name!r}", folder)
        by_class[name] = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not by_class[name]:
            raise EdgeferError(f"class folder holds no images ({', '.join(IMAGE_SUFFIXES)})", folder)
    classes = tuple(c for c in CANONICAL if c in by_class)
    images, labels = [], []
    for index, name in enumerate(classes):
        for file in by_class[name]:
            images.append(face_image(file, framings))
            labels.append(index)
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), classes, str(root))


def _split_folder(root: Path, split: str | None) -> Path:
    """Pick ``train/`` or ``test/`` inside a re-packaged dataset folder; plain class folders pass."""
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    split_dirs = {s: subdirs[s] for s in ("train", "test", "val", "validation") if s in subdirs}
    if not split_dirs:
        return root
    if split is None:
        raise EdgeferError(f"holds splits {sorted(split_dirs)}; choose one with --split", root)
    if split not in split_dirs:
        raise EdgeferError(f"has no {split!r} split folder (it has {sorted(split_dirs)})", root)
    return split_dirs[split]
