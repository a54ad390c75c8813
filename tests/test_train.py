"""Training: the loss goes down, a seed fixes the weights, augmentation keeps shape and range."""

import dataclasses

import numpy as np
import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec
from edgefer.nn.train import TrainConfig, augment, train

SPEC = ArchSpec(filters=(8, 16), convs_per_block=1, batchnorm=True, dense=(32,), num_classes=7)
CFG = TrainConfig(epochs=3, batch_size=32, lr=5e-3, seed=0, device="cpu")


def _state(model: FerModel):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


@pytest.fixture(scope="module")
def run_a(ck_train120):
    return train(SPEC, ck_train120, None, CFG, progress=False)


def test_training_reduces_loss(run_a, ck_train120):
    assert len(ck_train120) == 120
    history = run_a.history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(np.isfinite(row["loss"]) for row in history)
    assert history[0]["loss"] > history[-1]["loss"]
    model = run_a.model
    assert isinstance(model, FerModel)
    assert model.classes == ck_train120.classes and model.input_mode == "gray" and model.spec == SPEC
    assert not model.module.training
    assert next(model.module.parameters()).device.type == "cpu"
    assert run_a.best_val_accuracy is None and run_a.best_epoch == 3


def test_same_seed_same_weights(run_a, ck_train120):
    again = train(SPEC, ck_train120, None, CFG, progress=False)
    a, b = _state(run_a.model), _state(again.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in run_a.history] == [r["loss"] for r in again.history]


def test_other_seed_other_weights(run_a, ck_train120):
    other = train(SPEC, ck_train120, None, dataclasses.replace(CFG, seed=1, epochs=1), progress=False)
    a, b = _state(run_a.model), _state(other.model)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_validation_tracking_and_early_stop(ck_train120, ck_small):
    cfg = dataclasses.replace(CFG, epochs=4, patience=1, schedule="cosine", class_balanced=True, erase_prob=0.5)
    result = train(SPEC, ck_train120, ck_small, cfg, input_mode="edges", progress=False)
    assert 1 <= len(result.history) <= 4
    accs = [row["val_accuracy"] for row in result.history]
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert result.best_val_accuracy == max(accs)
    assert result.history[result.best_epoch - 1]["val_accuracy"] == result.best_val_accuracy
    assert result.model.input_mode == "edges"


def test_train_argument_checks(ck_train120):
    with pytest.raises(EdgeferError, match="outputs"):
        train(dataclasses.replace(SPEC, num_classes=3), ck_train120, None, CFG, progress=False)
    with pytest.raises(EdgeferError, match="schedule"):
        train(SPEC, ck_train120, None, dataclasses.replace(CFG, schedule="step"), progress=False)


def _agreement_with(teacher: FerModel, student: FerModel, data) -> float:
    return float((teacher.predict_proba(data.images).argmax(1) == student.predict_proba(data.images).argmax(1)).mean())


def test_distillation_pulls_the_student_towards_its_teachers(run_a, ck_train120, ck_small):
    teacher = run_a.model
    before = _state(teacher)
    cfg = dataclasses.replace(CFG, seed=5)
    plain = train(SPEC, ck_train120, None, cfg, progress=False)
    distilled = train(SPEC, ck_train120, None, dataclasses.replace(cfg, distill_weight=1.0, distill_temperature=2.0),
                      progress=False, teachers=[teacher])
    # Same seed, same batches: only the loss differs, and the distilled student agrees with its teacher more.
    assert _agreement_with(teacher, distilled.model, ck_small) > _agreement_with(teacher, plain.model, ck_small)
    after = _state(teacher)  # the teacher is not trained and is handed back as it came
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.is_contiguous() for p in teacher.module.parameters())


def test_mirrored_teacher_views_average_into_the_soft_labels(run_a):
    from edgefer.nn.train import _teacher_probabilities

    teacher = run_a.model.module.eval()
    x = torch.rand(5, 1, 48, 48, generator=torch.Generator().manual_seed(2))
    cfg = dataclasses.replace(CFG, distill_weight=0.9, distill_temperature=3.0)
    one_view = _teacher_probabilities(x, [teacher], cfg, torch.device("cpu"))
    mirrored = _teacher_probabilities(x.flip(-1), [teacher], cfg, torch.device("cpu"))
    both = _teacher_probabilities(x, [teacher], dataclasses.replace(cfg, distill_flip=True), torch.device("cpu"))
    assert torch.allclose(both, (one_view + mirrored) / 2, atol=1e-6)
    assert not torch.allclose(one_view, mirrored, atol=1e-4)  # the mirror is a different view for this teacher
    assert torch.allclose(both.sum(1), torch.ones(5))


def test_distillation_argument_checks(run_a, ck_train120):
    with pytest.raises(EdgeferError, match="teachers were given"):
        train(SPEC, ck_train120, None, CFG, progress=False, teachers=[run_a.model])
    with pytest.raises(EdgeferError, match="needs both"):
        train(SPEC, ck_train120, None, dataclasses.replace(CFG, distill_weight=0.5), progress=False)
    with pytest.raises(EdgeferError, match="edges"):
        train(SPEC, ck_train120, None, dataclasses.replace(CFG, distill_weight=0.5), input_mode="edges",
              progress=False, teachers=[run_a.model])


def test_recipes_ask_for_exactly_their_teachers(tmp_path):
    from edgefer.nn.recipes import run_recipe

    with pytest.raises(EdgeferError, match="distils 3 teachers.*--recipe fer2013-cnn-base"):
        run_recipe("fer2013-cnn-distilled", tmp_path / "m.safetensors", init=tmp_path / "init.safetensors")
    with pytest.raises(EdgeferError, match="distils no teachers"):
        run_recipe("ckplus-cnn", tmp_path / "m.safetensors", teachers=[tmp_path / "t.safetensors"])


def test_augment_keeps_shape_and_range():
    x = torch.rand(6, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(erase_prob=0.5)
    out = augment(x, cfg, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out, x)  # it does change the images
    again = augment(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # the generator fixes the augmentation


def test_augment_identity_when_disabled():
    x = torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(hflip=False, rotate_deg=0.0, shift=0.0, scale=0.0, erase_prob=0.0)
    torch.testing.assert_close(augment(x, cfg, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)


def test_augment_binary_edges_stay_in_range():
    x = (torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(2)) > 0.8).float()
    out = augment(x, TrainConfig(), torch.Generator().manual_seed(3))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_crop_scale_zooms_out_and_in():
    """A crop scale above 1 shows more around the face (the face shrinks), below 1 less."""
    x = torch.zeros(2, 1, 48, 48)
    x[:, :, 12:36, 12:36] = 1.0  # a bright square face in the middle
    still = dict(hflip=False, rotate_deg=0.0, shift=0.0)
    wide = augment(x, TrainConfig(**still, crop_scale=(1.3, 1.3)), torch.Generator().manual_seed(0))
    tight = augment(x, TrainConfig(**still, crop_scale=(0.8, 0.8)), torch.Generator().manual_seed(0))
    area = x.sum().item() / 2
    assert wide.sum().item() / 2 == pytest.approx(area / 1.3 ** 2, rel=0.05)
    assert tight.sum().item() / 2 == pytest.approx(area / 0.8 ** 2, rel=0.05)


def test_degradations_change_images_within_range_and_are_seeded():
    from edgefer.nn.train import degrade

    x = torch.rand(32, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    out = degrade(x, 1.0, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert (out - x).abs().mean() > 0.05
    torch.testing.assert_close(out, degrade(x, 1.0, torch.Generator().manual_seed(1)))
    # Blur and low resolution smooth the pixel-to-pixel noise of the input.
    assert (out[..., 1:] - out[..., :-1]).abs().mean() < (x[..., 1:] - x[..., :-1]).abs().mean()
    torch.testing.assert_close(degrade(x, 0.0, torch.Generator().manual_seed(1)), x)


def test_clean_view_distillation_uses_soft_labels_of_the_unaugmented_images(run_a, ck_train120, monkeypatch):
    from edgefer.nn import train as train_module

    seen = []
    original = train_module._clean_teacher_probabilities

    def spy(x, teachers, cfg, device, batch_size=512):
        seen.append(x.clone())
        return original(x, teachers, cfg, device, batch_size)

    monkeypatch.setattr(train_module, "_clean_teacher_probabilities", spy)
    cfg = dataclasses.replace(CFG, epochs=1, distill_weight=0.5, distill_view="clean", degrade_prob=0.5)
    train(SPEC, ck_train120, None, cfg, progress=False, teachers=[run_a.model])
    assert len(seen) == 1  # computed once, before training
    expected = torch.from_numpy(ck_train120.images.astype(np.float32) / 255.0)[:, None]
    torch.testing.assert_close(seen[0], expected)
    with pytest.raises(EdgeferError, match="distill_view"):
        train(SPEC, ck_train120, None, dataclasses.replace(cfg, distill_view="noisy"), progress=False, teachers=[run_a.model])
