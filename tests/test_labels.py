"""Canonical expression names: every common spelling maps to one name; unknown names fail clearly."""

import pytest

from edgefer.data.labels import CANONICAL, FER2013_CLASSES, canonical_classes, canonical_label
from edgefer.errors import EdgeferError


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("angry", "anger"), ("anger", "anger"), ("ANGRY", "anger"), (" Angry ", "anger"),
        ("sad", "sadness"), ("sadness", "sadness"),
        ("happiness", "happy"), ("happy", "happy"),
        ("surprised", "surprise"), ("surprise", "surprise"),
        ("disgusted", "disgust"), ("fearful", "fear"), ("scared", "fear"),
        ("contempt", "contempt"), ("neutral", "neutral"),
    ],
)
def test_canonical_label_spellings(name, canonical):
    assert canonical_label(name) == canonical


def test_canonical_names_map_to_themselves():
    assert all(canonical_label(c) == c for c in CANONICAL)


def test_fer2013_kaggle_order_is_canonical():
    # Kaggle emotion column: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral
    assert FER2013_CLASSES == ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral")


@pytest.mark.parametrize("name", ["bored", "", "happy-ish", "7"])
def test_unknown_name_raises_and_names_the_source(name):
    with pytest.raises(EdgeferError) as info:
        canonical_label(name, "/data/CK+48/" + name)
    assert repr(name) in str(info.value)
    assert "/data/CK+48" in str(info.value)


def test_canonical_classes_keeps_order_and_rejects_synonym_duplicates():
    assert canonical_classes(["sad", "angry", "happiness"]) == ("sadness", "anger", "happy")
    with pytest.raises(EdgeferError, match="same expression twice"):
        canonical_classes(["angry", "anger"])
