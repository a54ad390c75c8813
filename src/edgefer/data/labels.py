"""One canonical expression vocabulary for every dataset.

CK+ folders say ``anger``/``sadness``/``happy``, FER2013 says ``angry``/``sad``/``happy``; both map
to the same canonical names so that models and reports compare across datasets. A dataset keeps its
own label *set* (CK+ has contempt, FER2013 has neutral); only the spelling is unified.
"""

from __future__ import annotations

from edgefer.errors import EdgeferError

CANONICAL = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise", "neutral")

_SYNONYMS = {
    "anger": "anger", "angry": "anger", "mad": "anger",
    "contempt": "contempt", "contemptuous": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
}

# The Kaggle fer2013.csv `emotion` column, in its published order.
FER2013_CLASSES = ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral")


def canonical_label(name: str, source: str | None = None) -> str:
    """Map a class name in any common spelling to its canonical name."""
    key = str(name).strip().lower()
    if key not in _SYNONYMS:
        known = ", ".join(sorted(set(_SYNONYMS)))
        raise EdgeferError(f"unknown expression class {name!r} (known names: {known})", source)
    return _SYNONYMS[key]


def canonical_classes(names, source: str | None = None) -> tuple[str, ...]:
    classes = tuple(canonical_label(n, source) for n in names)
    if len(set(classes)) != len(classes):
        raise EdgeferError(f"class names {list(names)} name the same expression twice", source)
    return classes
