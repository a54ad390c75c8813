"""Shared fixtures: the read-only data folder and tiny datasets written from it into tmp folders.

Every dataset fixture is built from the shared CK+48 / FER2013 npz files, so that the loaders are
checked against the same pixels in each public format (npz, Kaggle csv, image folders).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.data.dataset import FaceDataset
from helpers import FER_CSV_COLUMNS, FER_FOLDER_NAMES, write_class_folders


def _data_dir() -> Path:
    env = os.environ.get("EDGEFER_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "ck_plus_48.npz").is_file():
        pytest.skip(f"shared data not found at {path} (set EDGEFER_DATA)")
    return path


def _media_dir(data_dir: Path, folder: str, probe: str, what: str) -> Path:
    path = data_dir / folder
    if not (path / probe).is_file():
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def images_dir(data_dir) -> Path:
    return _media_dir(data_dir, "images", "single_face.jpg", "photos")


@pytest.fixture(scope="session")
def video_dir(data_dir) -> Path:
    return _media_dir(data_dir, "video", "single_face.mp4", "videos")


@pytest.fixture(scope="session")
def ck_raw(data_dir):
    """The shared CK+48 npz exactly as stored: images, one-hot labels, class names."""
    with np.load(data_dir / "ck_plus_48.npz") as npz:
        return npz["images"].copy(), npz["labels"].copy(), [str(c) for c in npz["classes"]]


@pytest.fixture(scope="session")
def ck_full(data_dir) -> FaceDataset:
    from edgefer.data.loaders import load_npz

    return load_npz(data_dir / "ck_plus_48.npz")


def _first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


@pytest.fixture(scope="session")
def ck_small(ck_full) -> FaceDataset:
    """70 CK+ images: the first 10 of each class (file order kept)."""
    return ck_full.subset(_first_per_class(ck_full.labels, 10))


@pytest.fixture(scope="session")
def ck_train120(ck_full) -> FaceDataset:
    """120 CK+ images, stratified (the first ~17 of each class), for the training tests."""
    index = _first_per_class(ck_full.labels, 18)[:120]
    return ck_full.subset(index)


@pytest.fixture(scope="session")
def fer_raw(data_dir):
    """A few FER2013 PublicTest images per class: (images, int labels in Kaggle order, names)."""
    path = data_dir / "fer2013" / "public_test.npz"
    if not path.is_file():
        pytest.skip(f"FER2013 npz not found at {path}")
    with np.load(path) as npz:
        images, labels, names = npz["images"], npz["labels"].astype(np.int64), [str(c) for c in npz["classes"]]
    index = _first_per_class(labels, 3)  # 21 images; usage: the first two of a class Training, the third PublicTest
    return images[index].copy(), labels[index].copy(), names


@pytest.fixture(scope="session")
def fer_usage(fer_raw) -> np.ndarray:
    """The Kaggle ``Usage`` of each fer_raw image: per class two Training rows, then one PublicTest row."""
    _, labels, _ = fer_raw
    usage = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        usage[members] = "Training"
        usage[members[2:]] = "PublicTest"
    return usage


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def ck_npz_int(session_dir, ck_small) -> Path:
    """ck_small as an npz with int labels and the shared file's (non-canonical) class order."""
    path = session_dir / "ck_int.npz"
    np.savez(path, images=ck_small.images, labels=ck_small.labels, classes=np.array(ck_small.classes))
    return path


@pytest.fixture(scope="session")
def ck_npz_onehot(session_dir, ck_raw, ck_full, ck_small) -> Path:
    """The same images with one-hot float32 labels and the original class spellings."""
    _, _, raw_names = ck_raw
    path = session_dir / "ck_onehot.npz"
    onehot = np.eye(len(raw_names), dtype=np.float32)[ck_small.labels]
    np.savez(path, images=ck_small.images, labels=onehot, classes=np.array(raw_names))
    return path


@pytest.fixture(scope="session")
def ck_folder(session_dir, ck_small) -> Path:
    """ck_small as CK+48 image folders ROOT/<anger|contempt|...>/*.png."""
    return write_class_folders(session_dir / "CK+48", ck_small.images, ck_small.labels, ck_small.classes)


@pytest.fixture(scope="session")
def fer_csv(session_dir, fer_raw, fer_usage) -> Path:
    """A Kaggle-style fer2013.csv (emotion,pixels,Usage) holding the fer_raw images."""
    images, labels, _ = fer_raw
    path = session_dir / "fer2013.csv"
    lines = [FER_CSV_COLUMNS]
    for image, label, usage in zip(images, labels, fer_usage):
        lines.append(f"{int(label)},{' '.join(str(int(v)) for v in image.ravel())},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def fer_folder(session_dir, fer_raw) -> Path:
    """fer_raw as image folders with FER-style names ROOT/<angry|sad|...>/*.png."""
    images, labels, _ = fer_raw
    return write_class_folders(session_dir / "fer_flat", images, labels, FER_FOLDER_NAMES)


@pytest.fixture(scope="session")
def fer_split_folder(session_dir, fer_raw, fer_usage) -> Path:
    """The common re-packaging: ROOT/train/<class>/*.png and ROOT/test/<class>/*.png."""
    images, labels, _ = fer_raw
    root = session_dir / "fer_split"
    train = fer_usage == "Training"
    write_class_folders(root / "train", images[train], labels[train], FER_FOLDER_NAMES)
    write_class_folders(root / "test", images[~train], labels[~train], FER_FOLDER_NAMES)
    return root


@pytest.fixture
def single_face_folder(tmp_path, images_dir, ck_small) -> Path:
    """A class folder holding a raw photo (one face) next to a 48x48 crop of another class."""
    root = tmp_path / "photos"
    (root / "happy").mkdir(parents=True)
    (root / "sadness").mkdir()
    shutil.copy(images_dir / "single_face.jpg", root / "happy" / "single_face.jpg")
    assert cv2.imwrite(str(root / "sadness" / "crop.png"), ck_small.images[0])
    return root


# --- a tiny trained model, shared by the checkpoint, evaluate and CLI tests ---------------------

TINY_SPEC_KW = dict(filters=(8, 16), convs_per_block=1, kernel_size=3, downsample="maxpool", batchnorm=True,
                    dense=(32,), num_classes=7)


@pytest.fixture(scope="session")
def tiny_trained(ck_small):
    from edgefer.nn.spec import ArchSpec
    from edgefer.nn.train import TrainConfig, train

    cfg = TrainConfig(epochs=8, batch_size=16, lr=5e-3, label_smoothing=0.0, hflip=False, rotate_deg=0.0,
                      shift=0.0, scale=0.0, seed=0, device="cpu")
    result = train(ArchSpec(**TINY_SPEC_KW), ck_small, None, cfg, "gray", progress=False)
    result.model.info = {"note": "tiny test model", "scores": {"accuracy": 0.5}, "seed": 0}
    return result.model


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_trained, session_dir) -> Path:
    return tiny_trained.save(session_dir / "tiny.safetensors")
