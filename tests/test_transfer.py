"""Starting a net from a trained one of another form (edgefer.nn.transfer): a batch-norm net's filters
for its bias-free form, a ReLU net for its QCFS form, anything else refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec
from edgefer.nn.train import TrainConfig, train
from edgefer.nn.transfer import starting_state

SOURCE = ArchSpec(filters=(4, 6), convs_per_block=(1, 2), downsample="maxpool", batchnorm=True, bias=True,
                  dense=(10,), dropout=0.2)
CLASSES = tuple(f"c{i}" for i in range(SOURCE.num_classes))


def _trained_looking(spec: ArchSpec, shifts: bool = True) -> FerModel:
    """A net of ``spec`` with batch-norm scales, statistics (and, with ``shifts``, shifts and biases) set
    as training leaves them: far from their initial values."""
    torch.manual_seed(0)
    module = spec.build()
    with torch.no_grad():
        for name, layer in module.named_children():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 2.0)
                layer.running_var.uniform_(0.2, 3.0)
                if shifts:
                    layer.bias.uniform_(-0.3, 0.3)
                    layer.running_mean.uniform_(-0.5, 0.5)
            if getattr(layer, "bias", None) is not None and not isinstance(layer, torch.nn.BatchNorm2d):
                layer.bias.uniform_(-0.2, 0.2) if shifts else layer.bias.zero_()
    return FerModel(spec, module.eval(), CLASSES)


def test_batchnorm_scales_fold_into_the_filters_of_the_bias_free_form():
    source = _trained_looking(SOURCE)
    target = replace(SOURCE, batchnorm=False, bias=False, downsample="stride2")
    state, exact = starting_state(source, target)
    assert exact and set(state) == set(target.build().state_dict())
    bn = source.module.bn2_2
    expected = source.module.conv2_2.weight * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)
    assert torch.allclose(state["conv2_2.weight"], expected)
    assert torch.equal(state["fc1.weight"], source.module.fc1.weight)


def test_with_nothing_to_drop_the_bias_free_form_computes_what_the_source_does():
    """Zero shifts, means and biases: folding the scales is then exact (average pooling on both sides)."""
    source = _trained_looking(replace(SOURCE, downsample="avgpool"), shifts=False)
    target = replace(source.spec, batchnorm=False, bias=False)
    module = target.build().eval()
    module.load_state_dict(starting_state(source, target)[0])
    x = torch.rand(5, 1, 48, 48)
    assert torch.allclose(module(x), source.module(x), atol=1e-5)


def test_a_relu_net_starts_its_qcfs_form():
    source = _trained_looking(replace(SOURCE, batchnorm=False, bias=False, downsample="stride2"))
    state, exact = starting_state(source, replace(source.spec, activation="qcfs", levels=8))
    assert not exact and torch.equal(state["conv1_1.weight"], source.module.conv1_1.weight)


@pytest.mark.parametrize("source, target", [
    (replace(SOURCE, batchnorm=False, bias=False, downsample="stride2"), replace(SOURCE, batchnorm=False, bias=False,
                                                                                downsample="stride2", filters=(4, 8))),
    (replace(SOURCE, batchnorm=False, bias=False, downsample="stride2"), replace(SOURCE, batchnorm=False, bias=False)),
    (SOURCE, replace(SOURCE, batchnorm=False)),  # keeps its bias
], ids=["other-layers", "pooling-the-source-lacks", "with-bias"])
def test_other_forms_are_refused(source, target):
    with pytest.raises(EdgeferError, match="differs from the one to train"):
        starting_state(_trained_looking(source), target)


def test_the_trainer_fine_tunes_the_bias_free_form_of_a_batchnorm_net(ck_train120):
    source = _trained_looking(replace(SOURCE, num_classes=len(ck_train120.classes)))
    source = FerModel(source.spec, source.module, tuple(ck_train120.classes))
    target = replace(source.spec, batchnorm=False, bias=False, downsample="stride2")
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-9, seed=0, weight_standardization=True)
    result = train(target, ck_train120, None, config, progress=False, init=source)
    assert set(result.model.module.state_dict()) == set(target.build().state_dict())
    # a learning rate of ~0 keeps the folded filters, up to the means that standardisation removes
    folded = starting_state(source, target)[0]["conv2_1.weight"]
    tuned = result.model.module.conv2_1.weight
    centred = folded - folded.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(tuned, centred, atol=1e-4)
