"""Our NIR graph in another simulator's own importer (the ``peers`` extra: Sinabs, snnTorch)."""

from __future__ import annotations

import numpy as np
import pytest

sinabs = pytest.importorskip("sinabs", reason="the peers extra (pip install -e '.[peers]') is not installed")
snntorch = pytest.importorskip("snntorch", reason="the peers extra (pip install -e '.[peers]') is not installed")
TIMESTEPS = 50


@pytest.fixture(scope="module")
def converted(data_dir):
    """ckplus-loihi converted, its CK+48 held-out predictions in edgefer, and the input spikes they came from."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.nn.zoo import load_model
    from edgefer.snn.evaluate import build_snn, run_snn
    from edgefer.snn.simulate import encode

    model = load_model("ckplus-loihi")
    inputs = prepare_input(heldout_test_set(model).images, model.input_mode)
    net = build_snn(model)
    ours = run_snn(net, inputs, TIMESTEPS, record=False).predictions()
    return net, ours, encode(net.rates(inputs), TIMESTEPS, "rate", 0)  # the same input spikes for every simulator


def test_sinabs_runs_our_nir_graph_and_agrees_with_edgefer(converted):
    import sinabs.activation
    import torch

    from edgefer.snn.nir_export import to_nir

    net, ours, spikes = converted
    timesteps = TIMESTEPS
    n = spikes.shape[1]
    imported = sinabs.from_nir(to_nir(net), batch_size=n)
    for layer in imported.modules():
        if isinstance(layer, sinabs.layers.IAF):
            layer.spike_fn = sinabs.activation.SingleSpike  # NIR's IF spikes at most once per step, as ours
    batch_major = spikes.transpose(0, 1).reshape(n * timesteps, *spikes.shape[2:]).float()
    with torch.no_grad():
        out = imported(batch_major)
    counts = (out[0] if isinstance(out, tuple) else out).reshape(n, timesteps, -1).sum(1).numpy()
    assert np.mean(counts.argmax(1) == ours) >= 0.99


def test_snntorch_runs_our_nir_graph_with_three_fixes_and_agrees_with_edgefer(converted):
    """snnTorch 1.0's importer: nir.IF becomes Leaky(beta=0.9, init_hidden=False) and NIR's Flatten keeps
    start_dim 0 (NIR shapes have no batch axis); undone after import, it agrees with edgefer."""
    import torch
    from snntorch import Leaky
    from snntorch.import_nir import import_from_nir

    from edgefer.snn.nir_export import to_nir

    net, ours, spikes = converted
    imported = import_from_nir(to_nir(net))
    for module in imported.modules():
        if isinstance(module, Leaky):
            module.beta = torch.tensor(1.0)  # integrate-and-fire: no leak
            module.init_hidden = True  # keep the membrane inside: the executor passes on spikes only
        elif isinstance(module, torch.nn.Flatten):
            module.start_dim = 1  # the batch axis stays
    counts, state = 0, None
    with torch.no_grad():
        for step in spikes.float():
            out, state = imported(step) if state is None else imported(step, state)  # nirtorch's executor threads state
            counts = counts + out
    assert np.mean(counts.numpy().argmax(1) == ours) >= 0.99
