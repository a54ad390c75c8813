"""Spiking fine-tuning (edgefer.snn.tandem): its forward pass is the converted float SNN, its backward pass
reaches every weight and clip, and the trainer trains and selects with it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.qcfs import init_clips
from edgefer.nn.spec import ArchSpec
from edgefer.snn.convert import calibrated_input_scale, convert
from edgefer.snn.simulate import simulate
from edgefer.snn.tandem import SpikingForward

CLASSES = ("happy", "contempt", "fear", "surprise", "sadness", "anger", "disgust")
SPEC = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(10,),
                input_size=16, activation="qcfs", levels=4, stem=2)


def _model(spec: ArchSpec = SPEC) -> FerModel:
    torch.manual_seed(0)
    module = spec.build()
    init_clips(module, torch.rand(64, 1, 16, 16))
    return FerModel(spec, module, CLASSES)


@pytest.mark.parametrize("timesteps", [3, 8])
@pytest.mark.parametrize("stem", [2, 0])
def test_the_forward_pass_is_the_converted_snn(timesteps, stem):
    """Logits = the output neurons' integrated current over T steps, in the CNN's units, as `simulate`
    computes it for the converted net (same spikes in every hidden layer). Without the off-chip stem the
    pixels are the input rates, scaled as `convert` scales them from its calibration images."""
    model = _model(replace(SPEC, stem=stem))
    x = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.8
    net = convert(model, x)
    result = simulate(net, net.rates(x), timesteps)
    with torch.no_grad():
        logits = SpikingForward(model.module.eval(), calibrated_input_scale(x))(x, timesteps)
    expected = result.integrated.float() * net.info["scales"]["logits"] / timesteps
    assert torch.allclose(logits, expected, atol=1e-4)
    # and not the CNN's: at few steps the spikes differ from the quantised activations
    assert not torch.allclose(logits, model.module(x).detach(), atol=1e-3)


def test_gradients_reach_every_weight_and_clip():
    model = _model()
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    SpikingForward(model.module)(x, 6).logsumexp(1).sum().backward()
    for name, parameter in model.module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert float(parameter.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("spec, problem", [
    (replace(SPEC, activation="relu", levels=0), "QCFS"),
    (replace(SPEC, stem=0), "input_scale"),
    (replace(SPEC, batchnorm=True), "batch-norm"),
])
def test_nets_it_cannot_train_are_clear_errors(spec, problem):
    with pytest.raises(EdgeferError, match=problem):
        SpikingForward(spec.build())


def test_the_trainer_fine_tunes_and_selects_the_spiking_net(ck_train120):
    from edgefer.nn.train import TrainConfig, train

    spec = replace(SPEC, input_size=48)
    config = TrainConfig(epochs=2, batch_size=32, lr=1e-3, seed=0, spiking_timesteps=(4, 6))
    start = train(spec, ck_train120, None, replace(config, spiking_timesteps=()), progress=False).model
    result = train(spec, ck_train120, ck_train120, config, progress=False, init=start)
    assert result.best_val_accuracy is not None and len(result.history) == 2
    assert not torch.equal(result.model.module.conv1_1.weight, start.module.conv1_1.weight)
    # a net whose first convolution reads the pixels as spikes trains the same way
    stemless = train(replace(spec, stem=0), ck_train120, ck_train120, replace(config, epochs=1), progress=False)
    assert stemless.best_val_accuracy is not None
    with pytest.raises(EdgeferError, match="QCFS"):
        train(replace(spec, activation="relu", levels=0), ck_train120, None, config, progress=False)
    with pytest.raises(EdgeferError, match="fp32"):
        train(spec, ck_train120, None, replace(config, precision="bf16"), progress=False, init=start)
