"""Scaled weight standardisation (edgefer.nn.standardization): zero-mean weights of a trained norm while
training, plain weights after it, and the trainer's option that uses it."""

from __future__ import annotations

from dataclasses import replace

import torch

from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec
from edgefer.nn.standardization import RELU_GAIN, materialize_weights, standardize_weights, standardized_layers
from edgefer.nn.train import TrainConfig, train

SPEC = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(10,),
                stem=2)


def _net(spec: ArchSpec = SPEC) -> torch.nn.Module:
    torch.manual_seed(0)
    return spec.build()


def _unit_dims(weight: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, weight.dim()))


def test_a_new_net_uses_zero_mean_weights_with_the_relu_gain_as_their_norm():
    module = _net()
    standardize_weights(module, trained=False)
    for layer in standardized_layers(module):
        weight = layer.weight
        assert torch.allclose(weight.mean(_unit_dims(weight)), torch.zeros(weight.shape[0]), atol=1e-6)
        assert torch.allclose(weight.square().sum(_unit_dims(weight)).sqrt(), torch.full((weight.shape[0],), RELU_GAIN))
    # the raw weights' scale no longer matters: only the gains set the layer's norm
    layer = module.conv1_1
    before = layer.weight.detach().clone()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(7.0)
    assert torch.allclose(layer.weight, before, atol=1e-6)


def test_the_stem_with_one_input_is_left_as_it_is():
    """A fan-in of one has no mean to remove: standardising it would zero the layer."""
    module = _net()
    stem = module.stem.weight.detach().clone()
    standardize_weights(module, trained=False)
    assert module.stem not in standardized_layers(module)
    assert torch.equal(module.stem.weight, stem)


def test_a_trained_net_keeps_its_function_up_to_the_mean_weights():
    module = _net()
    with torch.no_grad():  # zero-mean weights: what a net trained with standardisation saves
        for layer in standardized_layers(module):
            layer.weight -= layer.weight.mean(_unit_dims(layer.weight), keepdim=True)
    x = torch.rand(5, 1, 48, 48)
    expected = module(x).detach()
    standardize_weights(module, trained=True)
    assert torch.allclose(module(x), expected, atol=1e-5)


def test_materialized_weights_are_plain_and_compute_the_same(tmp_path):
    module = _net()
    standardize_weights(module, trained=False)
    x = torch.rand(5, 1, 48, 48)
    expected = module(x).detach()
    materialize_weights(module)
    assert set(module.state_dict()) == set(SPEC.build().state_dict())
    assert torch.allclose(module(x), expected, atol=1e-6)
    classes = tuple(f"c{i}" for i in range(SPEC.num_classes))
    loaded = FerModel.load(FerModel(SPEC, module, classes).save(tmp_path / "ws.safetensors"))
    assert torch.allclose(loaded.module(x), expected, atol=1e-6)


def test_signals_keep_their_size_through_a_deep_net_without_batchnorm():
    """What batch-norm would do: eight layers on, the activations keep the first layer's scale."""
    spec = replace(SPEC, filters=(8,) * 4, convs_per_block=2, input_size=64, stem=0)
    module = _net(spec)
    standardize_weights(module, trained=False)
    x = torch.rand(32, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    stds, h = [], x
    with torch.no_grad():
        for name, layer in module.named_children():
            h = layer(h)
            if name.startswith("act"):
                stds.append(float(h.std()))
    assert min(stds) > 0.4 * stds[0] and max(stds) < 2.5 * stds[0]


def test_the_trainer_trains_through_it_and_saves_plain_zero_mean_weights(ck_train120, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, seed=0, weight_standardization=True)
    result = train(SPEC, ck_train120, ck_train120, config, progress=False)
    module = result.model.module
    assert set(module.state_dict()) == set(SPEC.build().state_dict())
    for layer in standardized_layers(module):
        assert torch.allclose(layer.weight.mean(_unit_dims(layer.weight)), torch.zeros(layer.weight.shape[0]), atol=1e-5)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # fine-tuning the saved net through it starts from the same function
    x = torch.rand(4, 1, 48, 48)
    tuned = train(SPEC, ck_train120, None, replace(config, epochs=1, lr=1e-9), progress=False, init=result.model)
    assert torch.allclose(tuned.model.module(x), module(x), atol=1e-4)
