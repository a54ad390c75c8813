"""Loaders: every public format gives the same FaceDataset; bad input gives an EdgeferError naming the file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.data.dataset import FaceDataset
from edgefer.data.faces import crop_face, detect_faces, face_from_photo
from edgefer.data.labels import CANONICAL, FER2013_CLASSES
from edgefer.data.loaders import (
    default_data_roots,
    face_image,
    load_dataset,
    load_image_folder,
    load_kaggle_csv,
    load_npz,
    read_image,
    resolve_named,
)
from edgefer.errors import EdgeferError
from helpers import FER_CSV_COLUMNS, by_class


def assert_well_formed(ds: FaceDataset):
    assert ds.images.dtype == np.uint8
    assert ds.images.ndim == 3 and ds.images.shape[1:] == (48, 48)
    assert ds.labels.dtype == np.int64
    assert ds.labels.shape == (len(ds.images),)
    assert all(c in CANONICAL for c in ds.classes)
    assert 0 <= ds.labels.min() and ds.labels.max() < len(ds.classes)


def assert_same_per_class(a: FaceDataset, b: FaceDataset):
    """Same class set and, per class name, the same images in the same order."""
    assert set(a.classes) == set(b.classes)
    ca, cb = by_class(a), by_class(b)
    for name in a.classes:
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)


def assert_names(exc_info, path):
    """The error names the offending file: in the message and in ``.path``."""
    assert str(path) in str(exc_info.value)
    assert exc_info.value.path == Path(path)


# --- npz -------------------------------------------------------------------------------------------

def test_shared_ckplus_npz_loads_canonical(ck_full, ck_raw):
    images, onehot, names = ck_raw
    assert_well_formed(ck_full)
    assert len(ck_full) == 981
    assert ck_full.classes == ("happy", "contempt", "fear", "surprise", "sadness", "anger", "disgust")
    np.testing.assert_array_equal(ck_full.images, images)
    np.testing.assert_array_equal(ck_full.labels, onehot.argmax(1))
    assert ck_full.class_counts() == {"happy": 207, "contempt": 54, "fear": 75, "surprise": 249,
                                      "sadness": 84, "anger": 135, "disgust": 177}


def test_int_and_onehot_npz_give_identical_datasets(ck_npz_int, ck_npz_onehot, ck_small):
    a, b = load_npz(ck_npz_int), load_npz(ck_npz_onehot)
    for ds in (a, b):
        assert_well_formed(ds)
        np.testing.assert_array_equal(ds.images, ck_small.images)
        np.testing.assert_array_equal(ds.labels, ck_small.labels)
        assert ds.classes == ck_small.classes
    assert a.source == str(ck_npz_int) and b.source == str(ck_npz_onehot)


def test_load_dataset_dispatches_npz(ck_npz_int, ck_small):
    ds = load_dataset(ck_npz_int)
    np.testing.assert_array_equal(ds.images, ck_small.images)
    assert load_dataset(str(ck_npz_int), split="test").classes == ck_small.classes  # split ignored


def test_npz_without_classes_uses_kaggle_order(tmp_path, fer_raw):
    images, labels, _ = fer_raw
    path = tmp_path / "noclasses.npz"
    np.savez(path, images=images, labels=labels)
    ds = load_npz(path)
    assert ds.classes == FER2013_CLASSES
    np.testing.assert_array_equal(ds.labels, labels)


def test_npz_with_float_images_in_unit_range_and_channel_axis(tmp_path, ck_small):
    path = tmp_path / "float.npz"
    np.savez(path, images=(ck_small.images / 255.0).astype(np.float32)[..., None], labels=ck_small.labels,
             classes=np.array(ck_small.classes))
    ds = load_npz(path)
    assert_well_formed(ds)
    np.testing.assert_array_equal(ds.images, ck_small.images)


def test_npz_with_fer_spellings_maps_to_canonical(tmp_path, fer_raw):
    images, labels, names = fer_raw
    assert names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    path = tmp_path / "fer.npz"
    np.savez(path, images=images, labels=labels, classes=np.array(names))
    assert load_npz(path).classes == FER2013_CLASSES


# --- Kaggle csv ------------------------------------------------------------------------------------

def test_kaggle_csv_all_rows(fer_csv, fer_raw):
    images, labels, _ = fer_raw
    ds = load_kaggle_csv(fer_csv)
    assert_well_formed(ds)
    assert ds.classes == FER2013_CLASSES
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.source == str(fer_csv)


@pytest.mark.parametrize("split, usage", [("train", "Training"), ("test", "PublicTest")])
def test_kaggle_csv_usage_filtering(fer_csv, fer_raw, fer_usage, split, usage):
    images, labels, _ = fer_raw
    keep = fer_usage == usage
    for ds in (load_kaggle_csv(fer_csv, usage=split), load_dataset(fer_csv, split)):
        assert_well_formed(ds)
        assert len(ds) == keep.sum()
        np.testing.assert_array_equal(ds.images, images[keep])
        np.testing.assert_array_equal(ds.labels, labels[keep])


def test_kaggle_csv_without_rows_of_a_usage(fer_csv):
    with pytest.raises(EdgeferError, match="PrivateTest") as info:
        load_kaggle_csv(fer_csv, usage="private-test")
    assert_names(info, fer_csv)


def test_kaggle_csv_without_usage_column(tmp_path, fer_raw):
    images, labels, _ = fer_raw
    path = tmp_path / "two_columns.csv"
    rows = [f"{label},{' '.join(map(str, image.ravel()))}" for image, label in zip(images[:3], labels[:3])]
    path.write_text("emotion,pixels\n" + "\n".join(rows) + "\n")
    np.testing.assert_array_equal(load_kaggle_csv(path).images, images[:3])


# --- image folders ---------------------------------------------------------------------------------

def test_ckplus_folder_matches_npz(ck_folder, ck_npz_int):
    folder, npz = load_image_folder(ck_folder), load_npz(ck_npz_int)
    assert_well_formed(folder)
    assert folder.classes == tuple(c for c in CANONICAL if c in npz.classes)  # canonical order
    assert_same_per_class(folder, npz)
    assert folder.source == str(ck_folder)
    assert_same_per_class(load_dataset(ck_folder), npz)


def test_fer_folder_with_fer_spellings_matches_csv(fer_folder, fer_csv):
    folder, csv = load_dataset(fer_folder), load_kaggle_csv(fer_csv)
    assert_well_formed(folder)
    assert set(folder.classes) == set(FER2013_CLASSES)
    assert_same_per_class(folder, csv)


@pytest.mark.parametrize("split", ["train", "test"])
def test_train_test_folder_needs_and_honours_split(fer_split_folder, fer_csv, split):
    ds = load_dataset(fer_split_folder, split)
    assert_well_formed(ds)
    assert_same_per_class(ds, load_kaggle_csv(fer_csv, usage=split))


def test_train_test_folder_without_split_raises(fer_split_folder):
    with pytest.raises(EdgeferError, match="split") as info:
        load_dataset(fer_split_folder)
    assert_names(info, fer_split_folder)


def test_train_test_folder_missing_split_raises(fer_split_folder):
    with pytest.raises(EdgeferError, match="private-test") as info:
        load_dataset(fer_split_folder, "private-test")
    assert_names(info, fer_split_folder)


def test_hidden_folders_and_non_images_are_ignored(tmp_path, ck_small):
    root = tmp_path / "data"
    (root / "happy").mkdir(parents=True)
    (root / ".ipynb_checkpoints").mkdir()
    cv2.imwrite(str(root / "happy" / "a.png"), ck_small.images[0])
    (root / "happy" / "notes.txt").write_text("not an image")
    ds = load_image_folder(root)
    assert ds.classes == ("happy",) and len(ds) == 1


# --- raw photos in class folders -------------------------------------------------------------------

def test_raw_photo_face_is_detected_and_cropped(single_face_folder, ck_small):
    photo = single_face_folder / "happy" / "single_face.jpg"
    gray = read_image(photo)
    assert gray.ndim == 2 and gray.dtype == np.uint8 and min(gray.shape) > 48
    faces = detect_faces(gray)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert w >= 48 and h >= 48 and x >= 0 and y >= 0 and x + w <= gray.shape[1] and y + h <= gray.shape[0]

    ds = load_image_folder(single_face_folder)
    assert_well_formed(ds)
    assert ds.classes == ("happy", "sadness") and ds.labels.tolist() == [0, 1]
    face = ds.images[0]
    assert face.shape == (48, 48) and face.std() > 10  # a real crop, not a flat patch
    np.testing.assert_array_equal(face, crop_face(gray, faces[0]))
    np.testing.assert_array_equal(face, face_image(photo))
    np.testing.assert_array_equal(ds.images[1], ck_small.images[0])  # a 48x48 image is taken as is


def test_multi_face_photo_takes_the_largest_face(images_dir):
    gray = read_image(images_dir / "multi_face.jpg")
    faces = detect_faces(gray)
    assert len(faces) >= 2
    areas = [f.box[2] * f.box[3] for f in faces]
    assert areas == sorted(areas, reverse=True)
    np.testing.assert_array_equal(face_from_photo(gray), crop_face(gray, faces[0]))


def test_large_image_without_face_raises_naming_the_file(tmp_path, ck_small):
    root = tmp_path / "data"
    (root / "happy").mkdir(parents=True)
    cv2.imwrite(str(root / "happy" / "ok.png"), ck_small.images[0])
    blank = root / "happy" / "uniform_gray.png"
    cv2.imwrite(str(blank), np.full((200, 200), 128, np.uint8))
    with pytest.raises(EdgeferError, match="no face") as info:
        load_image_folder(root)
    assert_names(info, blank)


def test_colour_and_16bit_images_are_read_as_gray(tmp_path, ck_small):
    face = ck_small.images[0]
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), cv2.cvtColor(face, cv2.COLOR_GRAY2BGR))
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), face.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(colour), face)
    np.testing.assert_array_equal(read_image(deep), face)


# --- bad input: an EdgeferError that names the offending file ---------------------------------------

def test_corrupt_image_file(tmp_path, ck_small):
    root = tmp_path / "data"
    (root / "anger").mkdir(parents=True)
    cv2.imwrite(str(root / "anger" / "a_good.png"), ck_small.images[0])
    bad = root / "anger" / "b_corrupt.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(EdgeferError, match="not a readable image") as info:
        load_dataset(root)
    assert_names(info, bad)


def test_empty_image_file(tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    with pytest.raises(EdgeferError) as info:
        read_image(bad)
    assert_names(info, bad)


def test_npz_images_of_wrong_shape(tmp_path):
    path = tmp_path / "small_images.npz"
    np.savez(path, images=np.zeros((10, 32, 32), np.uint8), labels=np.zeros(10, np.int64))
    with pytest.raises(EdgeferError, match="32") as info:
        load_dataset(path)
    assert_names(info, path)


@pytest.mark.parametrize("bad_label", [7, 99, -1])
def test_npz_label_out_of_range(tmp_path, ck_small, bad_label):
    labels = ck_small.labels.copy()
    labels[3] = bad_label
    path = tmp_path / "bad_label.npz"
    np.savez(path, images=ck_small.images, labels=labels, classes=np.array(ck_small.classes))
    with pytest.raises(EdgeferError, match="out of range") as info:
        load_npz(path)
    assert str(bad_label) in str(info.value)
    assert_names(info, path)


def test_npz_label_out_of_range_without_classes(tmp_path):
    path = tmp_path / "no_classes.npz"
    np.savez(path, images=np.zeros((3, 48, 48), np.uint8), labels=np.array([0, 1, 9]))
    with pytest.raises(EdgeferError, match="9") as info:
        load_npz(path)
    assert_names(info, path)


def test_npz_bad_one_hot_rows(tmp_path, ck_small):
    onehot = np.eye(7, dtype=np.float32)[ck_small.labels]
    onehot[0, :] = 0  # a row with no class
    path = tmp_path / "bad_onehot.npz"
    np.savez(path, images=ck_small.images, labels=onehot, classes=np.array(ck_small.classes))
    with pytest.raises(EdgeferError, match="one-hot") as info:
        load_npz(path)
    assert_names(info, path)


def test_npz_missing_arrays(tmp_path):
    path = tmp_path / "no_labels.npz"
    np.savez(path, images=np.zeros((3, 48, 48), np.uint8))
    with pytest.raises(EdgeferError, match="labels") as info:
        load_npz(path)
    assert_names(info, path)


def test_npz_label_count_mismatch(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, images=np.zeros((3, 48, 48), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(EdgeferError) as info:
        load_npz(path)
    assert_names(info, path)


def test_npz_unknown_class_name(tmp_path):
    path = tmp_path / "unknown_class.npz"
    np.savez(path, images=np.zeros((2, 48, 48), np.uint8), labels=np.array([0, 1]),
             classes=np.array(["happy", "bored"]))
    with pytest.raises(EdgeferError, match="bored") as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with pytest.raises(EdgeferError, match="npz") as info:
        load_dataset(path)
    assert_names(info, path)


def test_truncated_npz(tmp_path, ck_npz_int):
    path = tmp_path / "truncated.npz"
    path.write_bytes(ck_npz_int.read_bytes()[:2000])
    with pytest.raises(EdgeferError) as info:
        load_npz(path)
    assert_names(info, path)


def test_npy_file_named_npz(tmp_path):
    path = tmp_path / "really_npy.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((3, 48, 48), np.uint8))
    with pytest.raises(EdgeferError) as info:
        load_npz(path)
    assert_names(info, path)


def test_npz_with_string_labels(tmp_path):
    path = tmp_path / "string_labels.npz"
    np.savez(path, images=np.zeros((3, 48, 48), np.uint8), labels=np.array(["a", "b", "c"]))
    with pytest.raises(EdgeferError) as info:
        load_npz(path)
    assert_names(info, path)


def test_folder_without_class_folders(tmp_path, ck_small):
    root = tmp_path / "flat"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), ck_small.images[0])
    with pytest.raises(EdgeferError, match="no class folders") as info:
        load_dataset(root)
    assert_names(info, root)


def test_folder_with_only_empty_class_folders(tmp_path):
    root = tmp_path / "empty_classes"
    (root / "happy").mkdir(parents=True)
    (root / "sadness").mkdir()
    with pytest.raises(EdgeferError, match="no images") as info:
        load_dataset(root)
    assert_names(info, root / "happy")


def test_empty_class_folder_beside_full_ones(tmp_path, ck_small):
    root = tmp_path / "one_empty"
    (root / "happy").mkdir(parents=True)
    cv2.imwrite(str(root / "happy" / "a.png"), ck_small.images[0])
    (root / "sadness").mkdir()
    with pytest.raises(EdgeferError, match="no images") as info:
        load_dataset(root)
    assert_names(info, root / "sadness")


def test_unknown_class_folder_name(tmp_path, ck_small):
    root = tmp_path / "data"
    (root / "happy").mkdir(parents=True)
    (root / "bored").mkdir()
    cv2.imwrite(str(root / "happy" / "a.png"), ck_small.images[0])
    cv2.imwrite(str(root / "bored" / "b.png"), ck_small.images[1])
    with pytest.raises(EdgeferError, match="bored") as info:
        load_dataset(root)
    assert_names(info, root / "bored")


def test_two_folders_for_one_class(tmp_path, ck_small):
    root = tmp_path / "data"
    for name in ("angry", "anger"):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "a.png"), ck_small.images[0])
    with pytest.raises(EdgeferError, match="anger"):
        load_dataset(root)


def _csv(tmp_path, rows, name="fer2013.csv", header=FER_CSV_COLUMNS):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


GOOD_PIXELS = " ".join(["7"] * 2304)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (f"0,{' '.join(['7'] * 2303)} x,Training", "not integers"),
        (f"0,{' '.join(['7.5'] * 2304)},Training", "not integers"),
        ("0,1 2 3,Training", "3 pixels"),
        (f"0,{' '.join(['7'] * 2305)},Training", "2305 pixels"),
        (f"x,{GOOD_PIXELS},Training", "not integers"),
        (f"9,{GOOD_PIXELS},Training", "emotion 9"),
        (f"0,{' '.join(['300'] * 2304)},Training", "0..255"),
        ("0", "malformed"),
    ],
)
def test_csv_malformed_row(tmp_path, bad_row, message):
    path = _csv(tmp_path, [f"3,{GOOD_PIXELS},Training", bad_row])
    with pytest.raises(EdgeferError, match=message) as info:
        load_dataset(path)
    assert "line 3" in str(info.value)
    assert_names(info, path)


def test_csv_wrong_header(tmp_path):
    path = _csv(tmp_path, [f"3,{GOOD_PIXELS}"], header="label,image")
    with pytest.raises(EdgeferError, match="header") as info:
        load_dataset(path)
    assert_names(info, path)


def test_csv_binary_garbage(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes([0xFF, 0xFE, 0x80]) * 200)
    with pytest.raises(EdgeferError) as info:
        load_dataset(path)
    assert_names(info, path)


@pytest.mark.parametrize("loader, name", [(load_kaggle_csv, "missing.csv"), (load_image_folder, "missing_dir")])
def test_public_loaders_on_missing_path(tmp_path, loader, name):
    with pytest.raises(EdgeferError) as info:
        loader(tmp_path / name)
    assert_names(info, tmp_path / name)


def test_missing_file_and_unsupported_format(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(EdgeferError, match="no such file") as info:
        load_dataset(missing)
    assert_names(info, missing)
    other = tmp_path / "data.txt"
    other.write_text("hello")
    with pytest.raises(EdgeferError, match="unsupported") as info:
        load_dataset(other)
    assert_names(info, other)


def test_unknown_split(ck_npz_int):
    with pytest.raises(EdgeferError, match="bogus"):
        load_dataset(ck_npz_int, "bogus")


# --- named datasets ----------------------------------------------------------------------------------

def test_named_dataset_from_explicit_root(data_dir):
    assert resolve_named("ckplus", None, data_dir) == data_dir / "ck_plus_48.npz"
    assert resolve_named("fer2013", "train", data_dir) == data_dir / "fer2013" / "train.npz"
    assert resolve_named("fer2013", "test", data_dir) == data_dir / "fer2013" / "public_test.npz"
    assert resolve_named("fer2013", None, data_dir) == data_dir / "fer2013" / "public_test.npz"
    assert len(load_dataset("ckplus", data_root=data_dir)) == 981


def test_named_dataset_missing_says_where_it_looked(tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(EdgeferError) as info:
        load_dataset("ckplus", data_root=empty)
    message = str(info.value)
    assert str(empty / "ck_plus_48.npz") in message
    assert "EDGEFER_DATA" in message and "--data" in message


def test_edgefer_data_env_is_searched_first(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFER_DATA", str(tmp_path))
    assert default_data_roots()[0] == tmp_path.resolve()
    shutil.copy(os.devnull, tmp_path / "ck_plus_48.npz")  # a file there wins over any fallback root
    assert resolve_named("ckplus", None) == tmp_path.resolve() / "ck_plus_48.npz"


def test_named_dataset_missing_under_edgefer_data(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("EDGEFER_DATA", str(tmp_path))
    with pytest.raises(EdgeferError) as info:
        load_dataset("ckplus")
    assert str(tmp_path) in str(info.value)
