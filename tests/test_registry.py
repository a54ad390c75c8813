"""The registries: a target registered by a plugin appears everywhere without edits; Loihi through
the Target protocol; chip constants as an object; the dataset registry."""

from __future__ import annotations

import json
import shutil
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from typer.testing import CliRunner

from compare_fixtures import LOIHI_NET, tiny_model, tiny_model_set
from edgefer.errors import EdgeferError
from edgefer.targets import registry

PLUGIN = '''
from edgefer.targets import register_target
from edgefer.targets.common import BaseTarget


@register_target
class PluginBoardTarget(BaseTarget):
    name = "plugin-board"
    label = "A board from a third-party package"
    runtime = "onnxruntime FP32 (accuracy here); latency: cost model"
    order = 45
    constants = "plugin_board.json"
'''
# The Jetson Nano's cost-model constants, under another name: a complete modeled device in one data file.
CONSTANTS = "jetson_nano.json"


@pytest.fixture
def plugin_target(tmp_path, monkeypatch):
    """A target registered through the ``edgefer.targets`` entry-point group, from a module outside edgefer."""
    from edgefer.targets.devices import __path__ as devices_path

    (tmp_path / "plugin_board.py").write_text(PLUGIN)
    shutil.copy(f"{devices_path[0]}/{CONSTANTS}", tmp_path / "plugin_board.json")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = EntryPoint(name="plugin-board", value="plugin_board", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "plugin_entry_points", lambda: [entry])
    registry.discover.cache_clear()
    yield "plugin-board"
    registry._CLASSES.pop("plugin-board", None)
    sys.modules.pop("plugin_board", None)
    registry.discover.cache_clear()


def test_a_plugin_target_shows_up_in_targets_and_compare(plugin_target, tmp_path):
    from edgefer.bench.compare import CompareConfig, run_compare
    from edgefer.cli import app

    result = CliRunner().invoke(app, ["targets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["target"]: r for r in json.loads(result.output)}
    assert rows[plugin_target]["role"] == "edge" and rows[plugin_target]["validation"]["status"] == "validated"
    names = list(rows)
    assert names.index("coral") < names.index(plugin_target) < names.index("loihi")  # its order: 45
    models = tiny_model_set(tmp_path / "models")
    comparison = run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models), tmp_path / "out", progress=False)
    row = next(r for r in comparison.rows if r.target == plugin_target)
    assert row.ok and row.source == "modeled" and row.citations and 0 <= row.accuracy <= 1
    assert f"| {plugin_target} | gray |" in (tmp_path / "out" / "report.md").read_text()


def test_a_broken_plugin_is_a_clear_error(tmp_path, monkeypatch):
    entry = EntryPoint(name="broken", value="no_such_module_here", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "plugin_entry_points", lambda: [entry])
    registry.discover.cache_clear()
    try:
        with pytest.raises(EdgeferError, match="target plugin 'broken' .* failed to load"):
            registry.target_names()
    finally:
        registry.discover.cache_clear()


def test_registration_checks_the_class():
    from edgefer.targets.common import BaseTarget

    class Nameless(BaseTarget):
        label, runtime = "x", "y"

    with pytest.raises(EdgeferError, match="does not set 'name'"):
        registry.register_target(Nameless)

    class WrongRole(BaseTarget):
        name, label, runtime, role = "wrong-role", "x", "y", "toaster"

    with pytest.raises(EdgeferError, match="role must be one of host, edge, neuromorphic"):
        registry.register_target(WrongRole)


def test_options_reach_only_the_targets_that_take_them():
    from edgefer.targets import get_target

    assert get_target("host", threads=2, timesteps=7).threads == 2
    assert get_target("loihi", threads=2, timesteps=7).options.timesteps == 7
    assert get_target("coral", threads=2, timesteps=7).name == "coral"


# --- Loihi through the Target protocol ----------------------------------------------------------------
@pytest.fixture(scope="module")
def loihi_net(tmp_path_factory):
    from edgefer.nn.model import FerModel

    models = tiny_model_set(tmp_path_factory.mktemp("loihi-models"))
    return FerModel.load(models["gray"])


def test_loihi_exports_runs_and_costs_like_every_target(loihi_net, tmp_path):
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.snn.evaluate import SnnOptions, evaluate_snn
    from edgefer.targets import Artifact, Target, get_target

    loihi = get_target("loihi", timesteps=6)
    assert isinstance(loihi, Target) and loihi.check(loihi_net.spec) == []
    artifact = loihi.export(loihi_net, tmp_path / "loihi")
    assert (artifact.format, artifact.precision) == ("snn", "loihi") and loihi.check(artifact) == []
    assert {"model.nir", "encoder.safetensors", "artifact.json"} <= {p.name for p in (tmp_path / "loihi").iterdir()}
    moved = Artifact.load(shutil.copytree(tmp_path / "loihi", tmp_path / "moved"))
    test = heldout_test_set(loihi_net).subset(np.arange(20))
    inputs = prepare_input(test.images, "gray")
    logits, cost = loihi.evaluate(moved, inputs)
    reference = evaluate_snn(loihi_net, test, SnnOptions(timesteps=6), with_layers=False)
    labels = np.array([loihi_net.classes.index(test.classes[i]) for i in test.labels])
    assert float(np.mean(logits.argmax(1) == labels)) == reference["accuracy"]  # the same network, via NIR
    assert np.array_equal(loihi.run(moved, inputs).argmax(1), logits.argmax(1))
    assert cost.source == "modeled" and cost.latency_s == pytest.approx(reference["latency_s"])
    assert cost.energy_j == pytest.approx(reference["energy_j"]) and set(cost.citations) == {"davies2018-table2",
                                                                                             "blouw2019-static-power"}
    with pytest.raises(EdgeferError, match="depends on the spikes"):
        loihi.cost(moved)


def test_loihi_refuses_what_it_cannot_run(loihi_net):
    from edgefer.nn.spec import ArchSpec
    from edgefer.targets import get_target

    problems = get_target("loihi").check(ArchSpec(filters=(4,), dense=(8,), downsample="maxpool"))
    assert [v.rule for v in problems] == ["no-maxpool"] and problems[0].severity == "error"


def test_another_chip_is_another_constants_object(loihi_net):
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.snn.chip import Chip, default_chip
    from edgefer.snn.evaluate import SnnOptions, build_snn, run_on_chip

    data = json.loads(json.dumps(default_chip().data))
    data["static_power_w"]["value"] *= 2
    data["energy_j"]["synop"]["value"] *= 3
    twice = Chip("loihi-variant", data)
    inputs = prepare_input(heldout_test_set(loihi_net).images[:8], "gray")
    net = build_snn(loihi_net)
    base = run_on_chip(net, inputs, SnnOptions(timesteps=4))
    other = run_on_chip(net, inputs, SnnOptions(timesteps=4), twice)
    assert other.cost.static_power_w == 2 * base.cost.static_power_w
    assert other.cost.energy_breakdown_j["synops"] == pytest.approx(3 * base.cost.energy_breakdown_j["synops"])
    with pytest.raises(EdgeferError, match="lacks static_power_w"):
        Chip("broken", {k: v for k, v in data.items() if k != "static_power_w"})


# --- datasets -------------------------------------------------------------------------------------------
def test_a_registered_dataset_is_loaded_by_name(tmp_path, ck_raw):
    from edgefer.data.datasets import DatasetSpec, _SPECS, get_dataset, register_dataset
    from edgefer.data.loaders import default_split, load_dataset

    images, labels, classes = ck_raw
    np.savez(tmp_path / "mini.npz", images=images[:12], labels=labels[:12], classes=np.array(classes))
    register_dataset(DatasetSpec("mini-faces", {None: "mini.npz"}, "a test file"))
    try:
        assert len(load_dataset("mini-faces", None, tmp_path)) == 12
        assert default_split("mini-faces") is None and default_split("fer2013") == "test"
        with pytest.raises(EdgeferError, match="ships no model for the role 'cnn'"):
            get_dataset("mini-faces").shipped_model("cnn")
    finally:
        _SPECS.pop("mini-faces")
    with pytest.raises(EdgeferError, match="unknown dataset 'mini-faces'; choose one of ckplus, fer2013"):
        get_dataset("mini-faces")


def test_loihi_runs_each_net_for_the_fewest_timesteps_that_convert_well(loihi_net, tmp_path):
    """Without a requested T, the export sweeps T on the model's validation images and each run uses the
    smallest T whose SNN accuracy is within one point of its accuracy at T=50."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.recipes import VALIDATION_IMAGES, heldout_test_set, recorded_splits
    from edgefer.targets import get_target

    loihi = get_target("loihi")
    artifact = loihi.export(loihi_net, tmp_path / "auto")
    sweep = artifact.settings["timestep_sweep"]
    curve, chosen = sweep["accuracy_by_timestep"], sweep["timesteps"]
    bar = curve[49] - 0.01
    assert len(curve) == 50
    assert curve[chosen - 1] >= bar - 1e-12 and all(a < bar for a in curve[: chosen - 1])
    validation = recorded_splits(loihi_net)[1]
    assert sweep["images"] == f"ckplus validation split ({min(len(validation), VALIDATION_IMAGES)} images)"
    swept = [p["timesteps"] for p in sweep["points"]]
    assert swept == sorted(set(swept)) and {4, 8, 16, 32, 50, chosen} == set(swept)
    assert [p["accuracy"] for p in sweep["points"]] == [curve[t - 1] for t in swept]
    energies = [p["energy_j"] for p in sweep["points"]]
    assert energies == sorted(energies)  # every timestep costs: more steps, more energy
    inputs = prepare_input(heldout_test_set(loihi_net).subset(np.arange(8)).images, "gray")
    _, cost = loihi.evaluate(artifact, inputs)
    assert cost.figures["timesteps"] == chosen and cost.figures["timesteps_chosen_by"] == "sweep"
    assert loihi.artifact_label(artifact) == f"SNN T={chosen} loihi" and any("fewest timesteps" in n for n in cost.notes)
    requested = get_target("loihi", timesteps=7)
    _, cost = requested.evaluate(artifact, inputs)
    assert cost.figures["timesteps"] == 7 and cost.figures["timesteps_chosen_by"] == "requested"


def test_loihi_net_without_validation_images_runs_the_study_timesteps(tmp_path):
    """A model whose split keeps no validation images gives the export nothing to choose T on: it runs T=50
    and says why."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.nn.model import FerModel
    from edgefer.nn.recipes import SplitPlan, heldout_test_set
    from edgefer.targets import get_target

    path = tiny_model(tmp_path / "gray.safetensors", **LOIHI_NET)
    model = FerModel.load(path)
    model.info["split"] = SplitPlan(val_fraction=0.0).to_dict()
    loihi = get_target("loihi")
    artifact = loihi.export(model, tmp_path / "no-validation")
    assert artifact.settings["timestep_sweep"] is None
    _, cost = loihi.evaluate(artifact, prepare_input(heldout_test_set(model).subset(np.arange(4)).images, "gray"))
    assert cost.figures["timesteps"] == 50 and cost.figures["timesteps_chosen_by"] == "study"
    assert any("no validation images" in note for note in cost.notes)
