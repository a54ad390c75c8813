"""Our NIR graph in another simulator's own importer (the ``peers`` extra: Sinabs, snnTorch)."""

from __future__ import annotations

import numpy as np
import pytest

sinabs = pytest.importorskip("sinabs", reason="the peers extra (pip install -e '.[peers]') is not installed")


def test_sinabs_runs_our_nir_graph_and_agrees_with_edgefer(data_dir):
    import sinabs.activation
    import torch

    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.nn.zoo import load_model
    from edgefer.snn.evaluate import build_snn, run_snn
    from edgefer.snn.nir_export import to_nir
    from edgefer.snn.simulate import encode

    timesteps = 50
    model = load_model("ckplus-loihi")
    test = heldout_test_set(model)
    inputs = prepare_input(test.images, model.input_mode)
    net = build_snn(model)
    ours = run_snn(net, inputs, timesteps, record=False).predictions()
    spikes = encode(net.rates(inputs), timesteps, "rate", 0)  # the same input spikes for both
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
