"""The Loihi cost model against measured Loihi runs: the rebuilt nets, the error figures, the stored file."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.snn.chip import Chip, default_chip
from edgefer.snn.simulate import simulate
from edgefer.snn.validation import measured_net, validate
from edgefer.targets import get_target
from edgefer.targets.devices.loihi import VALIDATION_FILE


@pytest.fixture(scope="module")
def result():
    return validate()


def test_rebuilt_nets_fire_at_the_assumed_rate_with_branch_synapses_only():
    network = [{"kind": "dense", "neurons": 256}, {"kind": "branches", "copies": 3, "depth": 4, "neurons": 256},
               {"kind": "dense", "neurons": 29}]
    net = measured_net(network, 390)
    assert [layer.neurons for layer in net.layers] == [256, 768, 768, 768, 768, 29]
    assert net.layers[2].fan_in == 256  # a branch layer sees its own branch, not all three
    sim = simulate(net, torch.full((1, 390, 1, 1), 0.1), 20)
    for layer, stats in zip(net.layers, sim.layers):
        assert float(stats.spikes.sum()) == pytest.approx(0.1 * 20 * layer.neurons)
    assert float(sim.layers[2].synops.sum()) == pytest.approx(float(sim.layers[1].spikes.sum()) * 256)


def test_stored_validation_is_current(result):
    """benchmarks/loihi_validation.py wrote the file `edgefer targets` reads: it must match the constants."""
    stored = json.loads(VALIDATION_FILE.read_text())
    assert stored.keys() == result.keys()
    for mine, theirs in zip(stored["rows"], result["rows"]):
        numbers = [k for k, v in theirs.items() if isinstance(v, float)]
        assert {k: mine[k] for k in theirs if k not in numbers} == {k: theirs[k] for k in theirs if k not in numbers}
        assert [mine[k] for k in numbers] == pytest.approx([theirs[k] for k in numbers], rel=1e-6)
    assert stored["calibrated"] == pytest.approx(result["calibrated"], rel=1e-6)


def test_error_figures_follow_from_the_rows(result):
    rows = result["rows"]
    assert result["n_fit"] == sum(r["role"] == "fit" for r in rows) and result["n_holdout"] == len(rows) - result["n_fit"]
    for r in rows:
        assert r["default_latency_ape"] == pytest.approx(abs(r["default_latency_s"] / r["measured_latency_s"] - 1))
        assert r["measured_energy_j"] == pytest.approx(r["measured_power_w"] * r["measured_latency_s"])
    holdout = sorted(r["calibrated_power_ape"] for r in rows if r["role"] == "holdout")
    assert result["calibrated_power_mdape_holdout"] == pytest.approx((holdout[2] + holdout[3]) / 2)
    # Davies et al.'s per-operation figures leave out the per-step overhead of a real board: far too fast
    assert all(r["default_latency_s"] < 0.2 * r["measured_latency_s"] for r in rows)
    assert result["calibrated"]["host_io_s_per_timestep"] > 0 and result["calibrated"]["static_power_w"] > 0.029


def test_validation_needs_measurements_and_fit_points():
    chip = default_chip()
    data = copy.deepcopy(chip.data)
    for point in data["published_measurements"]["points"]:
        point["role"] = "holdout"
    with pytest.raises(EdgeferError, match="fit point"):
        validate(Chip("loihi", data))
    del data["published_measurements"]
    with pytest.raises(EdgeferError, match="no published measurements"):
        validate(Chip("loihi", data))


def test_targets_show_the_loihi_error(monkeypatch, tmp_path):
    import edgefer.targets.devices.loihi as loihi_module

    shown = get_target("loihi").validation()
    assert shown["n_fit"] >= 1 and shown["mdape_holdout"] > 0.5 and "detail" in shown
    monkeypatch.setattr(loihi_module, "VALIDATION_FILE", tmp_path / "missing.json")
    assert get_target("loihi").validation()["status"].startswith("unvalidated")
