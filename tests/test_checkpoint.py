"""FerModel checkpoints (safetensors + JSON metadata) and evaluation with labels matched by name."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgefer.data.dataset import FaceDataset
from edgefer.data.preprocess import prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.evaluate import evaluate, model_labels
from edgefer.nn.model import FORMAT, FerModel
from edgefer.nn.spec import ArchSpec
from edgefer.nn.zoo import load_model


def test_save_load_round_trip(tiny_trained, tmp_path, ck_small):
    path = tiny_trained.save(tmp_path / "sub" / "model.safetensors")
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no leftovers
    loaded = FerModel.load(path)
    assert loaded.classes == tiny_trained.classes
    assert loaded.input_mode == tiny_trained.input_mode
    assert loaded.spec == tiny_trained.spec
    assert loaded.info == tiny_trained.info
    assert not loaded.module.training
    x = prepare_input(ck_small.images, "gray")
    np.testing.assert_array_equal(loaded.logits(x), tiny_trained.logits(x))
    np.testing.assert_allclose(loaded.predict_proba(ck_small.images).sum(axis=1), 1.0, rtol=1e-5)
    assert isinstance(load_model(path), FerModel)  # the zoo loader takes paths too


def test_round_trip_keeps_edges_mode_and_order_of_classes(tmp_path):
    spec = ArchSpec(filters=(4,), convs_per_block=1, batchnorm=False, dense=(), num_classes=3)
    torch.manual_seed(0)
    model = FerModel(spec, spec.build(), ("surprise", "anger", "happy"), "edges-x2", {"a": [1, 2], "b": None})
    loaded = FerModel.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.classes == ("surprise", "anger", "happy")
    assert loaded.input_mode == "edges-x2"
    assert loaded.info == {"a": [1, 2], "b": None}
    for name, tensor in model.module.state_dict().items():
        assert torch.equal(tensor, loaded.module.state_dict()[name])


def test_model_checks_classes_and_mode():
    spec = ArchSpec(filters=(4,), convs_per_block=1, dense=(), num_classes=2)
    with pytest.raises(EdgeferError, match="class names"):
        FerModel(spec, spec.build(), ("happy",))
    with pytest.raises(EdgeferError, match="input mode"):
        FerModel(spec, spec.build(), ("happy", "sadness"), "rgb")


def _tiny_state():
    return {"w": torch.zeros(3)}


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes())
    with pytest.raises(EdgeferError) as info:
        FerModel.load(path)
    assert str(path) in str(info.value) and info.value.path == path


def test_safetensors_without_edgefer_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(_tiny_state(), str(path))
    with pytest.raises(EdgeferError, match="edgefer metadata") as info:
        FerModel.load(path)
    assert str(path) in str(info.value)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(EdgeferError, match="no such checkpoint") as info:
        FerModel.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(EdgeferError, match="unknown model"):
        load_model(path)


def test_wrong_format_and_mismatched_weights(tmp_path, tiny_trained):
    header = {"format": "something-else/9"}
    path = tmp_path / "other_format.safetensors"
    save_file(_tiny_state(), str(path), metadata={"edgefer": json.dumps(header)})
    with pytest.raises(EdgeferError, match="something-else") as info:
        FerModel.load(path)
    assert str(path) in str(info.value)

    header = {"format": FORMAT, "arch": tiny_trained.spec.to_dict(), "classes": list(tiny_trained.classes),
              "input_mode": "gray", "info": {}}
    path = tmp_path / "mismatch.safetensors"
    save_file(_tiny_state(), str(path), metadata={"edgefer": json.dumps(header)})
    with pytest.raises(EdgeferError, match="do not match") as info:
        FerModel.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("metadata", ["{not json", json.dumps({"format": FORMAT}), "[]"])
def test_corrupt_edgefer_metadata(tmp_path, metadata):
    path = tmp_path / "corrupt_meta.safetensors"
    save_file(_tiny_state(), str(path), metadata={"edgefer": metadata})
    with pytest.raises(EdgeferError) as info:
        FerModel.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("key, value", [("kernel_size", 2), ("input_mode", "rgb"), ("classes", ["happy"])])
def test_invalid_header_values_name_the_file(tmp_path, tiny_trained, key, value):
    arch = tiny_trained.spec.to_dict()
    change = {}
    if key == "kernel_size":
        arch["kernel_size"] = value
    else:
        change[key] = value
    header = {"format": FORMAT, "arch": arch, "classes": list(tiny_trained.classes), "input_mode": "gray",
              "info": {}} | change
    path = tmp_path / "bad_header.safetensors"
    state = {k: v.contiguous() for k, v in tiny_trained.module.state_dict().items()}
    save_file(state, str(path), metadata={"edgefer": json.dumps(header)})
    with pytest.raises(EdgeferError) as info:
        FerModel.load(path)
    assert str(path) in str(info.value)


# --- evaluate ----------------------------------------------------------------------------------------

def test_evaluate_report(tiny_trained, ck_small):
    scores = evaluate(tiny_trained, ck_small)
    predicted = tiny_trained.logits(prepare_input(ck_small.images, "gray")).argmax(1)
    assert scores["accuracy"] == pytest.approx(np.mean(predicted == ck_small.labels))
    assert scores["n"] == len(ck_small)
    assert scores["input"] == "gray"
    assert scores["classes"] == list(tiny_trained.classes)
    confusion = np.array(scores["confusion"])
    assert confusion.shape == (7, 7) and confusion.sum() == len(ck_small)
    assert np.trace(confusion) == int(round(scores["accuracy"] * len(ck_small)))
    assert scores["accuracy"] > 2 / 7  # the tiny model learnt something on its own training images
    edges = evaluate(tiny_trained, ck_small, input_mode="edges")
    assert edges["input"] == "edges" and edges["input_sparsity"] > scores["input_sparsity"]


def test_evaluate_matches_labels_by_class_name(tiny_trained, ck_small):
    k = len(ck_small.classes)
    reversed_set = FaceDataset(ck_small.images, (k - 1 - ck_small.labels).astype(np.int64),
                               tuple(reversed(ck_small.classes)), "reversed")
    np.testing.assert_array_equal(model_labels(tiny_trained, reversed_set), ck_small.labels)
    original, swapped = evaluate(tiny_trained, ck_small), evaluate(tiny_trained, reversed_set)
    assert swapped["accuracy"] == original["accuracy"]
    assert swapped["confusion"] == original["confusion"]
    assert swapped["per_class_accuracy"] == original["per_class_accuracy"]
    # the check has teeth: matching by index instead of by name would change the score
    predicted = tiny_trained.logits(prepare_input(ck_small.images, "gray")).argmax(1)
    assert np.mean(predicted == reversed_set.labels) != original["accuracy"]


def test_evaluate_subset_of_classes_and_unknown_class(tiny_trained, ck_small):
    happy = ck_small.classes.index("happy")
    only_happy = FaceDataset(ck_small.images[ck_small.labels == happy], np.zeros(10, np.int64), ("happy",), "h")
    scores = evaluate(tiny_trained, only_happy)
    assert scores["n"] == 10 and list(scores["per_class_accuracy"]) == ["happy"]
    neutral = FaceDataset(ck_small.images[:3], np.zeros(3, np.int64), ("neutral",), "fer_like.npz")
    with pytest.raises(EdgeferError, match="neutral") as info:
        evaluate(tiny_trained, neutral)
    assert "fer_like.npz" in str(info.value)
