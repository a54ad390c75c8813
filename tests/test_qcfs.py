"""Conversion-aware training: the QCFS activation, its clips, and its conversion to spikes (the
threshold is the trained clip, the membrane starts at half of it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.qcfs import Qcfs, init_clips, qcfs_layers
from edgefer.nn.spec import ArchSpec
from edgefer.snn.convert import convert
from edgefer.snn.simulate import simulate

CLASSES = ("happy", "contempt", "fear", "surprise", "sadness", "anger", "disgust")


def test_qcfs_quantises_clips_and_passes_the_clipped_relu_gradient():
    act = Qcfs(levels=4, clip=2.0)
    x = torch.tensor([-1.0, 0.2, 0.26, 0.7, 1.0, 1.9, 2.5], requires_grad=True)
    y = act(x)
    # 2 * clip(floor(x * 4 / 2 + 1/2) / 4, 0, 1): steps of 0.5, rounded to the nearest
    assert y.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0])
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # straight through inside the clip
    assert float(act.clip.grad) > 0  # the clip learns: outputs above it grow with it


def test_spec_ties_levels_to_the_qcfs_activation():
    assert ArchSpec(activation="qcfs", levels=8).levels == 8
    for bad in (dict(activation="qcfs"), dict(levels=4), dict(activation="qcfs", levels=999)):
        with pytest.raises(EdgeferError, match="levels"):
            ArchSpec(**bad)
    module = ArchSpec(activation="qcfs", levels=8, stem=3, batchnorm=False, bias=False).build()
    assert len(qcfs_layers(module)) == 1 + 6 + 1 and not any(isinstance(m, torch.nn.ReLU) for m in module.modules())


def test_clips_start_at_the_percentile_of_each_activation_input():
    torch.manual_seed(0)
    spec = ArchSpec(filters=(4,), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(6,),
                    input_size=8, activation="qcfs", levels=4)
    module = spec.build()
    x = torch.rand(64, 1, 8, 8)
    init_clips(module, x, percentile=100)
    with torch.no_grad():
        conv_out = module.conv1_1(x)
        # the dense layer's clip is measured on what the (already clipped) conv activation feeds it
        fc_in = module.fc1(module.flatten(module.act1_1(conv_out)))
    assert float(module.act1_1.clip.detach()) == pytest.approx(float(conv_out.max()), rel=1e-5)
    assert float(module.fc1_act.clip.detach()) == pytest.approx(float(fc_in.max()), rel=1e-5)


def _one_hidden_layer_model(levels: int) -> FerModel:
    torch.manual_seed(3)
    spec = ArchSpec(filters=(6,), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(),
                    input_size=8, activation="qcfs", levels=levels)
    module = spec.build()
    binary = (torch.rand(32, 1, 8, 8) > 0.5).float()
    init_clips(module, binary)
    return FerModel(spec, module, CLASSES)


@pytest.mark.parametrize("levels", [2, 4, 8])
def test_snn_is_the_quantised_ann_exactly_at_t_equal_to_l(levels):
    """The ideal case: constant input current (0/1 pixels spike every step or never). An IF neuron with
    threshold = clip, membrane started at half of it and reset by subtraction fires the QCFS level
    in L steps, so the output layer integrates exactly the quantised ANN's logits."""
    model = _one_hidden_layer_model(levels)
    x = (torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    net = convert(model, x, percentile=100)
    assert net.v_init == 0.5
    assert net.info["scales"]["conv1_1"] == pytest.approx(float(model.module.act1_1.clip.detach()))
    result = simulate(net, net.rates(x), levels)
    logits = model.module(x).detach()
    # float SNN units: integrated = W_norm . counts, W_norm = W * clip / scale_out, counts = L * q / clip
    scale_out = net.info["scales"]["logits"]
    assert torch.allclose(result.integrated.float() * scale_out / levels, logits, atol=1e-4)
    assert np.array_equal(result.predictions("membrane"), logits.argmax(1).numpy())


def test_relu_nets_keep_a_zero_initial_membrane_and_the_percentile_rule():
    spec = ArchSpec(filters=(6,), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(),
                    input_size=8)
    x = torch.rand(16, 1, 8, 8)
    net = convert(FerModel(spec, spec.build(), CLASSES), x, percentile=100)
    assert net.v_init == 0.0
    assert convert(_one_hidden_layer_model(4), x, v_init=0.0).v_init == 0.0  # an explicit choice wins


def test_a_relu_net_starts_a_qcfs_net_of_the_same_layers(ck_train120):
    from dataclasses import replace

    from edgefer.nn.train import TrainConfig, train

    relu = ArchSpec(filters=(4,), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(8,),
                    num_classes=len(ck_train120.classes))
    config = TrainConfig(epochs=1, batch_size=32, seed=0)
    start = train(relu, ck_train120, None, config, progress=False).model
    qcfs = replace(relu, activation="qcfs", levels=4)
    tuned = train(qcfs, ck_train120, None, replace(config, lr=1e-9), progress=False, init=start).model
    assert torch.allclose(tuned.module.conv1_1.weight, start.module.conv1_1.weight, atol=1e-5)
    assert all(float(layer.clip.detach()) > 0.01 for layer in qcfs_layers(tuned.module))  # set from data, not left at 1
    with pytest.raises(EdgeferError, match="differs"):
        train(replace(qcfs, dense=(9,)), ck_train120, None, config, progress=False, init=start)
