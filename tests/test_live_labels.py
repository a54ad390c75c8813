"""benchmarks/live_labels.py: the hand annotations are well formed, and the scoring counts what it says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
LABELS = {"anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral"}


@pytest.fixture(scope="module")
def bench():
    import sys

    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("live_labels", BENCH / "live_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_annotations_well_formed():
    data = json.loads((BENCH / "live_labels.json").read_text())
    assert set(data["labels"]) == LABELS
    for clip, entry in data["videos"].items():
        previous_end = -1
        for seg in entry["segments"]:
            assert seg["label"] is None or seg["label"] in LABELS, clip
            assert previous_end < seg["start"] <= seg["end"] < entry["frames"], (clip, seg)
            assert seg.get("note"), (clip, seg)
            previous_end = seg["end"]
    for clip, entry in data["photos"].items():
        for face in entry["faces"]:
            x, y, w, h = face["box"]
            assert face["label"] in LABELS and face.get("note")
            assert 0 <= x and 0 <= y and x + w <= entry["size"][0] and y + h <= entry["size"][1], (clip, face)
    assert len(data["photos"]["images/multi_face.jpg"]["faces"]) == 5


def test_score_video_counts(bench):
    segments = [{"start": 0, "end": 3, "label": "happy"}, {"start": 4, "end": 5, "label": "sadness", "ambiguous": True},
                {"start": 6, "end": 9, "label": None}]
    predicted = {0: "happy", 1: "happy", 2: "neutral", 3: None, 4: "fear", 5: None, 6: None, 7: "sadness"}  # 8, 9 missing
    score = bench.score_video(segments, predicted)
    assert (score["expression_frames"], score["correct"], score["found"]) == (4, 2, 3)
    assert score["accuracy"] == 0.5 and score["accuracy_when_found"] == round(2 / 3, 4)
    assert (score["noface_frames"], score["false_faces"]) == (4, 1)
    assert score["segments"][1]["ambiguous"] and score["segments"][2]["frames_with_face"] == [7]


def test_match_faces_one_to_one(bench):
    annotated = [{"box": [0, 0, 100, 100], "label": "happy"}, {"box": [300, 0, 100, 100], "label": "neutral"}]
    reported = [((310, 10, 90, 90), "neutral", 0.9), ((20, 20, 110, 110), "sadness", 0.8), ((900, 900, 50, 50), "happy", 0.7)]
    assert bench.match_faces(annotated, reported) == {0: 1, 1: 0}
    score = bench.score_photo(annotated, reported)
    assert (score["scored_faces"], score["found"], score["correct"]) == (2, 2, 1)
    assert score["unmatched_boxes"] == [{"box": [900, 900, 50, 50], "predicted": "happy"}]
