"""Spiking path: conversion, exact time-batched simulation, Loihi quantisation, accounting,
core mapping, cost model, NIR round trip and the ``edgefer snn eval`` command.

Tiny random networks and a handful of images keep this file fast; the CK+ accuracy targets are
measured by benchmarks/snn_accuracy.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import LOIHI_STUDY, ArchSpec
from edgefer.snn.chip import default_chip
from edgefer.snn.convert import SpikingLayer, SpikingNet, convert, quantise_loihi
from edgefer.snn.loihi import barrier_time, cost, partition
from edgefer.snn.simulate import encode, simulate, simulate_reference

CLASSES = ("happy", "contempt", "fear", "surprise", "sadness", "anger", "disgust")
# A scaled-down study net: 1x1 stem, stride-2 convs, no bias, ReLU, dense head.
TINY = ArchSpec(filters=(4, 6), convs_per_block=(1, 2), downsample="stride2", batchnorm=False, bias=False,
                dense=(12,), stem=2, input_size=16)


def tiny_model(spec: ArchSpec = TINY, seed: int = 0) -> FerModel:
    torch.manual_seed(seed)
    module = spec.build()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding is actually exercised
        for child in module.modules():
            if isinstance(child, nn.BatchNorm2d):
                child.running_mean.uniform_(-0.2, 0.2)
                child.running_var.uniform_(0.5, 2.0)
                child.weight.uniform_(0.5, 1.5)
                child.bias.uniform_(-0.1, 0.1)
    return FerModel(spec, module, CLASSES, "gray")


def images(n: int = 12, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 1, size, size), generator=torch.Generator().manual_seed(seed))


def ann_forward(net: SpikingNet, x: torch.Tensor) -> torch.Tensor:
    """The converted layers run as a ReLU network on rates (no spikes): normalised activations."""
    a = net.rates(x)
    for layer in net.layers[:-1]:
        a = layer.current(a).clamp(min=0)
    return net.layers[-1].current(a)


# --- conversion ------------------------------------------------------------------------------

def test_normalised_layers_reproduce_the_cnn_scaled_by_the_output_percentile():
    model = tiny_model()
    x = images()
    net = convert(model, x, percentile=100.0)
    expected = model.module(x) / net.info["scales"]["logits"]
    assert torch.allclose(ann_forward(net, x), expected, atol=1e-5, rtol=1e-4)
    assert net.info["offchip"] == ["stem", "stem_act"]
    assert all(layer.threshold == 1.0 for layer in net.layers)


@pytest.mark.parametrize("head", ["flatten", "avg"])
def test_batchnorm_and_bias_fold_with_avgpool_downsampling(head):
    spec = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="avgpool", batchnorm=True, bias=True, dense=(10,),
                    input_size=16, head=head)
    model = tiny_model(spec)
    x = images()
    net = convert(model, x, percentile=100.0)
    pools = ["pool2", "gap"] if head == "avg" else ["pool2"]
    assert [layer.name for layer in net.layers] == ["conv1_1", "pool1", "conv2_1", *pools, "fc1", "logits"]
    assert net.layers[0].source_layers == ("conv1_1", "bn1_1", "act1_1")
    expected = model.module(x) / net.info["scales"]["logits"]
    assert torch.allclose(ann_forward(net, x), expected, atol=1e-5, rtol=1e-4)


def test_spike_rates_approach_the_cnn_with_more_timesteps():
    model = tiny_model()
    x = images(16)
    net = convert(model, x, percentile=99.9)
    target = ann_forward(net, x)
    errors = []
    for steps in (8, 128):
        sim = simulate(net, net.rates(x), steps, record=False)
        errors.append(float((sim.integrated / steps - target).abs().mean()))
    assert errors[1] < errors[0] / 3
    long = simulate(net, net.rates(x), 256, record=False)
    agreement = (long.integrated.argmax(1) == target.argmax(1)).float().mean()
    assert agreement >= 0.9


@pytest.mark.parametrize("replace, kind", [("act1_1", nn.Sigmoid()), ("act2_1", nn.Tanh())])
def test_unsupported_activation_names_the_layer(replace, kind):
    model = tiny_model()
    setattr(model.module, replace, kind)
    with pytest.raises(EdgeferError, match=replace):
        convert(model, images(2))


def test_maxpool_and_unfoldable_batchnorm_are_refused():
    pooled = tiny_model(ArchSpec(filters=(4,), convs_per_block=1, downsample="maxpool", batchnorm=False, dense=(8,),
                                 input_size=16))
    with pytest.raises(EdgeferError, match="pool1.*MaxPool2d"):
        convert(pooled, images(2))
    model = tiny_model()
    model.module.fc1_act = nn.Sequential()  # a dense layer without its ReLU
    with pytest.raises(EdgeferError, match="fc1"):
        convert(model, images(2))
    bn_model = tiny_model(ArchSpec(filters=(4,), convs_per_block=1, downsample="stride2", batchnorm=True, dense=(8,),
                                   input_size=16))
    modules = list(bn_model.module.named_children())
    order = [name for name, _ in modules]
    i, j = order.index("bn1_1"), order.index("act1_1")
    modules[i], modules[j] = modules[j], modules[i]  # ReLU before batch-norm: cannot fold
    from collections import OrderedDict
    bn_model.module = nn.Sequential(OrderedDict(modules))
    with pytest.raises(EdgeferError, match="bn1_1"):
        convert(bn_model, images(2))


# --- simulation ------------------------------------------------------------------------------

def _assert_same(net: SpikingNet, x: torch.Tensor, steps: int, encoding: str, chunk_elements: int):
    trains: list[torch.Tensor] = []
    fast = simulate(net, net.rates(x), steps, encoding, seed=3, trains=trains, chunk_elements=chunk_elements)
    slow, reference = simulate_reference(net, net.rates(x), steps, encoding, seed=3)
    for layer, a, b in zip(net.layers, trains, reference):
        assert torch.equal(a, b), layer.name
    assert torch.equal(fast.membrane, slow.membrane)
    assert torch.equal(fast.integrated, slow.integrated)
    assert torch.equal(fast.counts, slow.counts)
    assert sum(float(t.sum()) for t in trains) > 0  # the comparison is not between silent networks
    # Without trains to keep, layers feeding int8 synapses hand on uint8 spikes: the same run.
    lean = simulate(net, net.rates(x), steps, encoding, seed=3, chunk_elements=chunk_elements)
    assert torch.equal(lean.counts, fast.counts) and torch.equal(lean.membrane, fast.membrane)
    assert all(torch.equal(a.spikes, b.spikes) and torch.equal(a.active_updates, b.active_updates)
               for a, b in zip(lean.layers, fast.layers))
    return fast, trains


@pytest.mark.parametrize("precision", ["float", "loihi"])
@pytest.mark.parametrize("encoding, leak, v_init, chunk", [("rate", 0.0, 0.0, 10**7), ("poisson", 0.0, 0.5, 3000),
                                                          ("rate", 0.05, 0.5, 2000)])
def test_time_batched_simulation_gives_exactly_the_reference_spikes(precision, encoding, leak, v_init, chunk):
    model = tiny_model()
    x = images(6)
    net = convert(model, x, leak=leak, v_init=v_init)
    if precision == "loihi":
        net = quantise_loihi(net)
    _assert_same(net, x, 17, encoding, chunk)


@pytest.mark.parametrize("spike_dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("bounds, clamp_current", [(None, False), ((-300.0, 300.0), False), ((-300.0, 300.0), True)])
def test_compiled_scan_matches_the_torch_loop_across_blocks(spike_dtype, bounds, clamp_current):
    """The compiled integrate-and-fire scan against the step-by-step torch loop, on a layer wider
    than one parallel block (the last block partial) with currents that saturate the state."""
    from edgefer.snn.neuron_scan import _BLOCK, integrate_and_fire

    generator = torch.Generator().manual_seed(0)
    steps, batch, neurons, threshold = 9, 3, 2 * _BLOCK + 37, 97.0
    current = torch.randint(-200, 400, (steps, batch, neurons), generator=generator).float()
    current[:, :, ::5] = 0  # silent inputs: not active updates
    start = torch.randint(-100, 100, (batch, neurons), generator=generator).float()
    membrane, spikes = start.clone(), torch.empty(current.shape, dtype=spike_dtype)
    counts = torch.zeros(batch, neurons, dtype=torch.int32)
    current[:, :, 1::5] *= 3  # some currents beyond the state bounds
    active = integrate_and_fire(current, membrane, spikes, threshold, bounds, counts, clamp_current)

    def torch_loop(state_bounds, clamp_in=clamp_current):
        v, fired = start.clone(), torch.empty_like(current)
        for t in range(steps):
            v += current[t].clamp(*state_bounds) if clamp_in else current[t]
            if state_bounds is not None:
                v.clamp_(*state_bounds)
            torch.ge(v, threshold, out=fired[t])
            v.sub_(fired[t], alpha=threshold)
        return v, fired

    v, expected = torch_loop(bounds)
    assert torch.equal(spikes.float(), expected) and torch.equal(membrane, v)
    assert torch.equal(counts, expected.sum(0).int())
    assert torch.equal(active, (current != 0).sum((0, 2)))
    assert 0 < float(expected.mean()) < 1
    if bounds is not None:  # the state saturated: the bounds changed the spikes
        assert not torch.equal(expected, torch_loop(None, False)[1])
    if clamp_current:  # and so did clamping the current
        assert not torch.equal(expected, torch_loop(bounds, False)[1])
    with pytest.raises(ValueError, match="contiguous"):
        integrate_and_fire(current.transpose(1, 2), membrane.t(), spikes.transpose(1, 2), threshold, bounds)


@pytest.mark.parametrize("odd", [None, 0.5, 2.0, -1.0, float("nan")])
def test_binary_spikes_convert_0_1_input_and_refuse_anything_else(odd):
    from edgefer.snn.neuron_scan import binary_spikes

    spikes = (torch.rand(7, 3, 2, 12, 13, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    if odd is not None:
        spikes[6, 2, 1, 11, 12] = odd  # the very last value, in the last frame
        assert binary_spikes(spikes) is None
        return
    frames = binary_spikes(spikes)
    assert torch.equal(frames, spikes.to(torch.uint8))
    assert frames.reshape(21, 2, 12, 13).is_contiguous(memory_format=torch.channels_last)  # as int8 convs read them
    assert torch.equal(binary_spikes(spikes.flatten(2)), spikes.flatten(2).to(torch.uint8))  # dense input
    assert torch.equal(binary_spikes(spikes[:, 1:]), spikes[:, 1:].to(torch.uint8))  # a batch sliced out, read in place


@pytest.mark.parametrize("head", ["flatten", "avg"])
def test_loihi_int8_synapses_give_the_reference_currents_and_spikes(head):
    """Loihi mode runs its synapses as int8 convolutions / matmuls (channels last): the same currents
    as the float conv of the reference, for grouped (avg-pool) convolutions, biases and dense heads."""
    from edgefer.snn.simulate import _Buffers, _Int8Synapses, _synapses

    spec = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="avgpool", batchnorm=True, bias=True, dense=(10,),
                    input_size=16, head=head)
    model = tiny_model(spec)
    x = images(5)
    net = quantise_loihi(convert(model, x))
    assert any(layer.groups > 1 for layer in net.layers) and any(layer.bias is not None for layer in net.layers)
    synapses = _synapses(net, binary_input=True)
    assert all(isinstance(syn, _Int8Synapses) for syn in synapses)
    _, trains = _assert_same(net, x, 13, "poisson", 10**7)
    inputs = [encode(net.rates(x), 13, "poisson", seed=3)] + trains[:-1]
    for layer, syn, spikes in zip(net.layers, synapses, inputs):
        expected = layer.current(spikes.reshape(-1, *layer.input_shape)).reshape(13, 5, *layer.output_shape)
        assert torch.equal(syn.current(spikes, _Buffers()), expected), layer.name


def test_int8_weights_are_packed_again_after_an_in_place_change():
    model = tiny_model()
    x = images(3)
    net = quantise_loihi(convert(model, x))
    _assert_same(net, x, 7, "rate", 10**7)  # packs the weights
    with torch.no_grad():
        net.layers[0].weight.neg_()
    _assert_same(net, x, 7, "rate", 10**7)


def test_non_binary_input_takes_the_float_synapses_and_still_matches_the_reference():
    from edgefer.snn.neuron_scan import binary_spikes

    model = tiny_model()
    x = images(3)
    net = quantise_loihi(convert(model, x))
    spikes = encode(net.rates(x), 9) * 2  # double-weight input events: not 0/1, int8 spikes would not apply
    assert binary_spikes(spikes) is None and torch.equal(binary_spikes(spikes / 2), (spikes / 2).to(torch.uint8))
    trains: list[torch.Tensor] = []
    fast = simulate(net, net.rates(x), 9, spikes_in=spikes, trains=trains)
    slow, reference = simulate_reference(net, net.rates(x), 9, spikes_in=spikes)
    assert all(torch.equal(a, b) for a, b in zip(trains, reference))
    assert torch.equal(fast.membrane, slow.membrane) and torch.equal(fast.counts, slow.counts)


@pytest.mark.parametrize("precision", ["float", "loihi"])
def test_accounting_matches_spike_trains_and_brute_force_fan_out(precision):
    model = tiny_model()
    x = images(5)
    net = convert(model, x)
    if precision == "loihi":  # channels-last state: the counts must come back in output_shape order
        net = quantise_loihi(net)
    sim, trains = _assert_same(net, x, 12, "rate", 10**7)
    encoded = encode(net.rates(x), 12)
    inputs = [encoded] + trains[:-1]
    for layer, stats, spikes_in, spikes_out in zip(net.layers, sim.layers, inputs, trains):
        assert torch.equal(stats.spikes, spikes_out.sum(0).reshape(5, -1).sum(1).double())
        assert torch.equal(stats.input_spikes, spikes_in.sum(0).reshape(5, -1).sum(1).double())
        # synops = sum over steps of input spikes x synapses they reach = events received by the outputs
        received = sum(float(layer.received_map(spikes_in[t].sum(0)).sum()) for t in range(12))
        assert float(stats.synops.sum()) == pytest.approx(received)
        assert float(stats.received_events.sum()) == pytest.approx(received)
        current = torch.stack([layer.current(spikes_in[t]) for t in range(12)])
        assert torch.equal(stats.active_updates, (current != 0).reshape(12, 5, -1).sum((0, 2)))
        assert stats.neuron_updates == layer.neurons * 12


@pytest.mark.parametrize("size, out", [(7, 4), (8, 4), (6, 3)])
def test_fan_out_map_counts_synapses_exactly_at_borders_and_strides(size, out):
    layer = SpikingLayer("c", "conv", torch.randn(3, 2, 3, 3), None, 1.0, (2, size, size), (3, out, out), stride=2,
                         padding=1)
    fan = layer.fan_out_map()
    brute = torch.zeros(2, size, size)
    for oy in range(out):
        for ox in range(out):
            for ky in range(3):
                for kx in range(3):
                    iy, ix = oy * 2 - 1 + ky, ox * 2 - 1 + kx
                    if 0 <= iy < size and 0 <= ix < size:
                        brute[:, iy, ix] += 3  # every output channel
    assert torch.equal(fan, brute)
    assert float(fan.sum()) == float(layer.fan_in_map().sum())


def test_encodings():
    rates = torch.tensor([[0.0, 0.1, 0.5, 0.97, 1.0]])
    spikes = encode(rates, 40, "rate")
    assert spikes.shape == (40, 1, 5)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.all((spikes.sum(0) - rates * 40).abs() <= 1)
    assert spikes[:, 0, 0].sum() == 0 and spikes[:, 0, 4].sum() == 40
    poisson = encode(rates.expand(200, 5), 50, "poisson", seed=1)
    assert torch.allclose(poisson.mean((0, 1)), rates[0], atol=0.02)
    assert torch.equal(poisson, encode(rates.expand(200, 5), 50, "poisson", seed=1))
    with pytest.raises(EdgeferError):
        encode(rates, 0)


def test_predictions_break_count_ties_by_membrane():
    from edgefer.snn.simulate import SimResult

    counts = torch.tensor([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]], dtype=torch.float64)
    membrane = torch.tensor([[0.1, 0.4, 9.0], [5.0, -1.0, 0.2]], dtype=torch.float64)
    sim = SimResult(counts, membrane, torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]], dtype=torch.float64), 10)
    assert sim.predictions("spikes").tolist() == [1, 2]
    assert sim.predictions("membrane").tolist() == [2, 1]


def test_readout_scores_estimate_the_output_activation_and_keep_the_readouts_class():
    from edgefer.snn.evaluate import readout_scores

    model = tiny_model()
    x = images(16)
    net = convert(model, x, percentile=100.0)  # no layer clips on these images
    net.v_init = 0.5
    logits = model.module(x).detach().double().numpy()
    sim = simulate(net, net.rates(x), 512, record=False)
    for readout in ("spikes", "membrane"):
        scores = readout_scores(sim, net, readout, net.info["scales"]["logits"])
        assert scores.argmax(1).tolist() == sim.predictions(readout).tolist()
        # The estimate follows the logits, negative ones included.
        assert np.abs(scores - logits).max() < 0.05 * np.abs(logits).max()
        assert (scores[logits < -0.1] < 0).all()
    # A near tie: the membrane readout and the spike readout disagree, the scores keep the spike readout's class.
    from edgefer.snn.simulate import SimResult

    tie = SimResult(torch.tensor([[3.0, 2.0]], dtype=torch.float64), torch.tensor([[0.1, 0.9]], dtype=torch.float64),
                    torch.tensor([[3.0, 3.2]], dtype=torch.float64), 4)
    np.testing.assert_allclose(readout_scores(tie, net, "spikes", 2.0), [[3.7 * 2.0 / 4, 3.2 * 2.0 / 4]])
    np.testing.assert_allclose(readout_scores(tie, net, "membrane", 2.0), [[3.0 * 2.0 / 4, 3.2 * 2.0 / 4]])


# --- Loihi quantisation ----------------------------------------------------------------------

def test_loihi_quantisation_stays_within_loihi_formats():
    model = tiny_model()
    x = images(8)
    float_net = convert(model, x)
    net = quantise_loihi(float_net)
    low, high = default_chip().data["limits"]["weight_exponent_range"]["value"]
    for fl, q in zip(float_net.layers, net.layers):
        assert torch.equal(q.weight, q.weight.round())
        assert q.weight.min() >= -128 and q.weight.max() <= 127 and q.weight.abs().max() == 127
        assert low <= q.weight_exponent <= high
        assert q.weight_scale == 2 ** (6 + q.weight_exponent)
        assert q.threshold % 64 == 0 and 0 < q.threshold <= 2 ** 20
        # effective weight / threshold reproduces the float weight (threshold 1) to 8-bit precision
        ratio = q.weight * q.weight_scale / q.threshold
        assert float((ratio - fl.weight).abs().max()) <= float(fl.weight.abs().max()) / 127 * 0.51 + 1e-3
    sim = simulate(net, net.rates(x), 30, record=False)
    low_v, high_v = net.state_bounds
    assert (low_v, high_v) == (-(2 ** 23), 2 ** 23 - 1)
    assert float(sim.membrane.min()) >= low_v and float(sim.membrane.max()) <= high_v
    assert torch.equal(sim.membrane, sim.membrane.round())
    with pytest.raises(EdgeferError):
        quantise_loihi(float_net, weight_bits=12)


def test_loihi_mode_tracks_float_mode():
    model = tiny_model()
    x = images(16)
    float_net = convert(model, x)
    a = simulate(float_net, float_net.rates(x), 64, record=False)
    b = simulate(quantise_loihi(float_net), float_net.rates(x), 64, record=False)
    assert (a.predictions("membrane") == b.predictions("membrane")).mean() >= 0.8
    assert abs(float(a.counts.sum() - b.counts.sum())) <= 0.1 * float(a.counts.sum())


# --- mapping and cost ------------------------------------------------------------------------

def test_study_net_partitions_into_one_chip_within_core_limits():
    model = FerModel(LOIHI_STUDY, LOIHI_STUDY.build(), CLASSES)
    x = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    net = convert(model, x)
    cores = partition(net)
    limits = default_chip().data["limits"]
    synapse_bytes = default_chip().data["layout"]["synapse_bits"]["value"] / 8
    for core in cores:
        assert core.neurons <= limits["neurons_per_core"]["value"]
        assert core.input_axons <= limits["input_axons_per_core"]["value"]
        assert core.output_axons <= limits["output_axons_per_core"]["value"]
        assert core.synapses * synapse_bytes <= limits["synaptic_memory_bytes_per_core"]["value"]
    for layer in net.layers:  # every neuron sits on exactly one core
        covered = torch.zeros(layer.output_shape if len(layer.output_shape) == 3 else (layer.output_shape[0], 1, 1))
        for core in (c for c in cores if c.layer == layer.name):
            c0, c1, y0, y1, x0, x1 = core.box
            covered[c0:c1, y0:y1, x0:x1] += 1
        assert torch.all(covered == 1), layer.name
        total_synapses = sum(c.synapses for c in cores if c.layer == layer.name)
        assert total_synapses == float(layer.fan_in_map().sum())
    assert len(cores) <= limits["cores_per_chip"]["value"]
    assert len({c.layer for c in cores}) == 9


def test_dense_layer_beyond_a_core_is_refused():
    layer = SpikingLayer("wide", "dense", torch.ones(4, 5000), None, 1.0, (5000,), (4,))
    net = SpikingNet([layer], (5000,), ("a", "b", "c", "d"))
    with pytest.raises(EdgeferError, match="wide"):
        partition(net)


def test_cost_model_adds_up_from_the_table_2_constants():
    model = tiny_model()
    x = images(4)
    net = quantise_loihi(convert(model, x))
    sim = simulate(net, net.rates(x), 20)
    c, rows = cost(net, sim, static_power_w=0.0)
    e = {k: v["value"] for k, v in default_chip().data["energy_j"].items()}
    synops = sum(float(s.synops.mean()) for s in sim.layers)
    active = sum(float(s.active_updates.double().mean()) for s in sim.layers)
    updates = sum(s.neuron_updates for s in sim.layers)
    assert c.energy_breakdown_j["synops"] == pytest.approx(synops * e["synop"])
    assert c.energy_breakdown_j["neuron_updates_active"] == pytest.approx(active * e["neuron_update_active"])
    assert c.energy_breakdown_j["neuron_updates_inactive"] == pytest.approx((updates - active) * e["neuron_update_inactive"])
    assert c.energy_breakdown_j["spikes"] >= sum(float(s.spikes.mean()) for s in sim.layers) * e["spike_within_tile"] * 0.999
    assert c.energy_j == pytest.approx(sum(c.energy_breakdown_j.values()))
    assert c.source == "modeled" and c.power_w == pytest.approx(c.energy_j / c.latency_s)
    busiest = max(r["step_time_s"] for r in rows)
    assert c.latency_s == pytest.approx(20 * (busiest + barrier_time(c.tiles)))
    # static power and host I/O are exposed parameters that add exactly their share
    s, _ = cost(net, sim, static_power_w=0.5, host_io_s_per_timestep=1e-4)
    assert s.latency_s == pytest.approx(c.latency_s + 20 * 1e-4)
    assert s.energy_j == pytest.approx(c.energy_j + 0.5 * s.latency_s)
    assert barrier_time(1) == pytest.approx(113e-9) and barrier_time(32) == pytest.approx(465e-9)


def test_silent_input_costs_only_neuron_updates_and_static_power():
    model = tiny_model()
    net = quantise_loihi(convert(model, images(4)))
    sim = simulate(net, torch.zeros(2, *net.input_shape), 10)
    c, _ = cost(net, sim, static_power_w=0.029)
    assert c.energy_breakdown_j["synops"] == 0 and c.energy_breakdown_j["spikes"] == 0
    assert c.energy_breakdown_j["neuron_updates_active"] == 0
    assert c.energy_breakdown_j["neuron_updates_inactive"] > 0 and c.static_energy_j > 0


def test_constants_file_cites_davies_2018_table_2():
    constants = default_chip().data
    assert "Davies" in constants["_about"] and "Table 2" in constants["_about"]
    assert constants["energy_j"]["synop"]["value"] == 23.6e-12
    assert constants["time_s"]["neuron_update_active"]["value"] == 8.4e-9
    for group in ("energy_j", "time_s", "limits", "layout"):
        assert all(entry["source"] for entry in constants[group].values())
    assert constants["static_power_w"]["source"]


# --- NIR -------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["float", "loihi"])
def test_nir_round_trip_gives_identical_spikes(tmp_path, precision):
    nir = pytest.importorskip("nir")
    from edgefer.snn.nir_export import export_nir, from_nir

    model = tiny_model()
    x = images(4)
    net = convert(model, x, v_init=0.5)
    if precision == "loihi":
        net = quantise_loihi(net)
    path = export_nir(net, tmp_path / "tiny.nir")
    graph = nir.read(str(path))
    kinds = [type(graph.nodes[name]).__name__ for name in graph.nodes]
    assert kinds.count("IF") == len(net.layers) and "Flatten" in kinds
    back = from_nir(graph, net.encoder, net.input_scale)
    assert back.precision == precision and back.classes == net.classes and back.v_init == 0.5
    a, b = [], []
    simulate(net, net.rates(x), 15, trains=a, record=False)
    simulate(back, net.rates(x), 15, trains=b, record=False)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert sum(float(p.sum()) for p in a) > 0


# --- command line ----------------------------------------------------------------------------

def _run(*args):
    """The real entry point in a fresh interpreter (exit status and stderr as users see them)."""
    return subprocess.run([sys.executable, "-c", "from edgefer.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def _invoke(*args):
    """The command in this process (no second torch import): fast for the success paths."""
    from typer.testing import CliRunner

    from edgefer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture()
def tiny_files(tmp_path, ck_small):
    spec = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(8,),
                    stem=2, input_size=48)
    model = tiny_model(spec)
    model.classes = tuple(ck_small.classes)
    path = model.save(tmp_path / "tiny.safetensors")
    data = tmp_path / "few.npz"
    pick = np.arange(0, len(ck_small), 10)
    np.savez(data, images=ck_small.images[pick], labels=ck_small.labels[pick], classes=np.array(ck_small.classes))
    return path, data, len(pick)


def test_cli_snn_eval_json_contract(tiny_files):
    path, data, n = tiny_files
    done = _invoke("snn", "eval", "--model", path, "--data", data, "--timesteps", "6", "--input", "edges", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    for key in ("accuracy", "n", "spikes_per_image", "synops_per_image", "energy_j", "latency_s", "cores"):
        assert key in result
    assert result["n"] == n and result["input"] == "edges" and result["source"] == "modeled"
    assert result["cores"] >= 5 and result["energy_j"] > 0 and result["latency_s"] > 0
    assert "evaluated images" in result["calibration"]


def test_cli_snn_eval_refuses_a_maxpool_model(tmp_path, tiny_files):
    _, data, _ = tiny_files
    spec = ArchSpec(filters=(4,), convs_per_block=1, downsample="maxpool", batchnorm=False, dense=(8,), input_size=48)
    path = FerModel(spec, spec.build(), CLASSES).save(tmp_path / "pooled.safetensors")
    done = _run("snn", "eval", "--model", str(path), "--data", str(data), "--timesteps", "3", "--json")
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "pool1" in done.stderr


def test_history_gives_the_result_of_every_shorter_run():
    from edgefer.snn.simulate import SimResult

    model = tiny_model()
    x = images(4)
    net = quantise_loihi(convert(model, x))
    history: list = []
    simulate(net, net.rates(x), 12, history=history, record=False, chunk_elements=3000)
    assert len(history) == 12
    for steps in (1, 5, 12):
        short = simulate(net, net.rates(x), steps, record=False)
        counts, membrane, integrated = history[steps - 1]
        assert torch.equal(short.counts, counts) and torch.equal(short.membrane, membrane)
        assert torch.equal(short.integrated, integrated)
        assert (SimResult(counts, membrane, integrated, steps).predictions() == short.predictions()).all()


def test_evaluate_snn_reports_the_contract_and_a_consistent_accuracy_curve(ck_small):
    from edgefer.snn.evaluate import SnnOptions, evaluate_snn

    spec = ArchSpec(filters=(4, 6), convs_per_block=1, downsample="stride2", batchnorm=False, bias=False, dense=(8,),
                    stem=2, input_size=48)
    model = tiny_model(spec)
    model.classes = tuple(ck_small.classes)
    few = ck_small.subset(np.arange(0, len(ck_small), 7))
    result = evaluate_snn(model, few, SnnOptions(timesteps=8, batch_size=4), accuracy_curve=True)
    assert len(result["accuracy_by_timestep"]) == 8
    assert result["accuracy_by_timestep"][-1] == result["accuracy"]
    assert result["n"] == len(few) and result["source"] == "modeled" and result["accuracy_source"] == "simulated"
    assert result["spikes_per_image"] == pytest.approx(sum(row["spikes"] for row in result["layers"]))
    assert result["energy_j"] == pytest.approx(result["dynamic_energy_j"] + result["static_energy_j"])
    assert sum(row["neurons"] for row in result["per_core"]) == sum(row["neurons"] for row in result["layers"])


def test_cli_export_nir_writes_a_readable_graph(tmp_path, tiny_files):
    nir = pytest.importorskip("nir")
    path, data, _ = tiny_files
    out = tmp_path / "tiny.nir"
    done = _invoke("snn", "export-nir", "--model", path, "--calibration-data", data, "--out", out)
    assert done.exit_code == 0, done.output
    graph = nir.read(str(out))
    assert sum(type(node).__name__ == "IF" for node in graph.nodes.values()) == 4
    missing = _invoke("snn", "export-nir", "--model", path, "--out", out)
    assert isinstance(missing.exception, EdgeferError) and "card does not record" in str(missing.exception)


def test_saturating_24_bit_state_matches_the_reference_exactly():
    """Loihi mode with inputs large enough to hit the 24-bit limits (the clamps are not skipped)."""
    torch.manual_seed(0)
    mantissa = torch.randint(-128, 128, (6, 300)).float()
    layers = [SpikingLayer("big", "dense", mantissa, None, float(2 ** 20), (300,), (6,), weight_scale=2.0 ** 13,
                           weight_exponent=7),
              SpikingLayer("out", "dense", torch.randint(-128, 128, (3, 6)).float(), None, float(2 ** 14), (6,), (3,),
                           weight_scale=2.0 ** 6, weight_exponent=0)]
    net = SpikingNet(layers, (300,), ("a", "b", "c"), precision="loihi", state_bits=24)
    rates = torch.rand(4, 300, generator=torch.Generator().manual_seed(2))
    big_current = layers[0].current(encode(rates, 1)[0])
    assert float(big_current.abs().max()) > 2 ** 23  # the test really saturates
    fast, _ = _assert_same(net, rates, 9, "poisson", 10**7)
    assert float(fast.layers[0].spikes.sum()) > 0
