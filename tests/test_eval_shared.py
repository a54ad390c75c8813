"""``evaluate(..., classes="shared")`` and ``edgefer eval --classes shared``: data and model with partly different classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgefer.cli import app
from edgefer.data.dataset import FaceDataset
from edgefer.data.loaders import load_npz
from edgefer.data.preprocess import prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.evaluate import evaluate, scored_classes

runner = CliRunner()
DATA_CLASSES = ("happy", "neutral", "sadness")  # the tiny model (CK+ classes) knows happy and sadness, not neutral


@pytest.fixture(scope="module")
def partly_shared(ck_small) -> FaceDataset:
    """10 happy, 10 sadness and 4 'neutral' images (CK+ anger crops relabelled), classes in a non-model order."""
    pick = {name: np.flatnonzero(ck_small.labels == ck_small.classes.index(name)) for name in ("happy", "sadness", "anger")}
    images = np.concatenate([ck_small.images[pick["happy"]], ck_small.images[pick["anger"][:4]],
                             ck_small.images[pick["sadness"]]])
    labels = np.array([0] * 10 + [1] * 4 + [2] * 10, dtype=np.int64)
    return FaceDataset(images, labels, DATA_CLASSES, "partly_shared.npz")


@pytest.fixture(scope="module")
def partly_shared_npz(tmp_path_factory, partly_shared):
    path = tmp_path_factory.mktemp("shared") / "partly_shared.npz"
    np.savez(path, images=partly_shared.images, labels=partly_shared.labels, classes=np.array(DATA_CLASSES))
    return path


def expected_shared_accuracy(model, data: FaceDataset) -> tuple[float, int]:
    """By hand: keep happy/sadness images, argmax over the model's happy and sadness logits only."""
    keep = data.labels != DATA_CLASSES.index("neutral")
    shared = [c for c in model.classes if c in ("happy", "sadness")]
    logits = model.logits(prepare_input(data.images[keep], "gray"))[:, [model.classes.index(c) for c in shared]]
    truth = np.array([shared.index(DATA_CLASSES[label]) for label in data.labels[keep]])
    return float(np.mean(logits.argmax(1) == truth)), int(keep.sum())


def test_shared_scores_only_the_common_classes(tiny_trained, partly_shared):
    scores = evaluate(tiny_trained, partly_shared, classes="shared")
    accuracy, n = expected_shared_accuracy(tiny_trained, partly_shared)
    assert scores["n"] == n == 20
    assert scores["accuracy"] == pytest.approx(accuracy)
    assert scores["classes_mode"] == "shared"
    assert set(scores["classes"]) == {"happy", "sadness"}
    assert scores["dropped_data_classes"] == {"neutral": 4}
    assert scores["dropped_model_classes"] == [c for c in tiny_trained.classes if c not in ("happy", "sadness")]
    confusion = np.array(scores["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == 20
    assert np.trace(confusion) == round(accuracy * 20)
    assert set(scores["per_class_accuracy"]) == {"happy", "sadness"}


def test_shared_with_one_common_class(tiny_trained, ck_small):
    """Only happy is shared: the other 60 images are dropped and the argmax over one logit is always right."""
    happy = ck_small.classes.index("happy")
    only_happy = FaceDataset(ck_small.images, np.where(ck_small.labels == happy, 0, 1).astype(np.int64),
                             ("happy", "neutral"), "h")
    scores = evaluate(tiny_trained, only_happy, classes="shared")
    assert scores["n"] == 10 and scores["accuracy"] == 1.0  # one scored class: argmax over one logit
    assert scores["dropped_data_classes"] == {"neutral": 60}


def test_all_is_the_default_and_still_rejects_unknown_classes(tiny_trained, partly_shared, ck_small):
    with pytest.raises(EdgeferError, match="neutral.*--classes shared scores only the classes both know"):
        evaluate(tiny_trained, partly_shared)
    same = evaluate(tiny_trained, ck_small), evaluate(tiny_trained, ck_small, classes="shared")
    assert same[0]["accuracy"] == same[1]["accuracy"] and same[0]["confusion"] == same[1]["confusion"]
    assert same[0]["classes_mode"] == "all" and same[0]["dropped_data_classes"] == {}
    assert same[1]["dropped_model_classes"] == [] and same[1]["dropped_data_classes"] == {}


def test_no_shared_class_is_a_clear_error(tiny_trained, ck_small):
    neutral = FaceDataset(ck_small.images[:3], np.zeros(3, np.int64), ("neutral",), "fer_like.npz")
    with pytest.raises(EdgeferError) as info:
        scored_classes(tiny_trained, neutral, "shared")
    message = str(info.value)
    assert "fer_like.npz" in message and "neutral" in message and "happy" in message and "\n" not in message
    with pytest.raises(EdgeferError, match="classes must be one of"):
        evaluate(tiny_trained, ck_small, classes="some")


def test_cli_classes_shared_json_and_table(tiny_checkpoint, tiny_trained, partly_shared_npz):
    result = runner.invoke(app, ["eval", "--model", str(tiny_checkpoint), "--data", str(partly_shared_npz),
                                 "--classes", "shared", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    accuracy, n = expected_shared_accuracy(tiny_trained, load_npz(partly_shared_npz))
    assert scores["n"] == n and scores["accuracy"] == pytest.approx(accuracy)
    assert scores["classes_mode"] == "shared" and scores["dropped_data_classes"] == {"neutral": 4}
    table = runner.invoke(app, ["eval", "--model", str(tiny_checkpoint), "--data", str(partly_shared_npz),
                                "--classes", "shared"])
    assert table.exit_code == 0, table.output
    dropped = [line for line in table.stdout.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and "neutral (4 images)" in dropped[0]
    default = runner.invoke(app, ["eval", "--model", str(tiny_checkpoint), "--data", str(partly_shared_npz)])
    assert isinstance(default.exception, EdgeferError) and "neutral" in str(default.exception)
