"""Measured mode: device bundles, the device runner (run here for real with the CPU runtimes), its power
parsers, and measurements merged into compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compare_fixtures import tiny_model_set
from edgefer.errors import EdgeferError
from edgefer.targets import device_runner

# tegrastats lines as JetPack prints them: the Nano (JetPack 4, rails without units) and Orin (JetPack 5-6).
TEGRASTATS = {
    "RAM 2446/3956MB (lfb 5x2MB) SWAP 0/1978MB CPU [12%@1479,8%@1479,9%@1479,6%@1479] EMC_FREQ 0% GR3D_FREQ 0% "
    "PLL@27C CPU@29.5C PMIC@50C GPU@27.5C AO@36C thermal@28.5C POM_5V_IN 2451/2451 POM_5V_GPU 0/0 POM_5V_CPU 409/409": 2.451,
    "RAM 2105/7620MB (lfb 1185x4MB) SWAP 0/3810MB CPU [3%@729,1%@729,0%@729,0%@729,off,off] GR3D_FREQ 0% "
    "cpu@47.343C soc2@46.5C VDD_IN 5012mW/4980mW VDD_CPU_GPU_CV 741mW/741mW VDD_SOC 1480mW/1480mW": 5.012,
    "RAM 3350/7620MB CPU [40%@1510,35%@1510] GR3D_FREQ 99% tj@55C VDD_IN 14141mW/13900mW VDD_CPU_GPU_CV 8000mW/7900mW": 14.141,
    "RAM 1000/4000MB CPU [1%@102] GR3D_FREQ 0%": None,
}


@pytest.mark.parametrize("line, watts", TEGRASTATS.items())
def test_tegrastats_board_power(line, watts):
    assert device_runner.parse_tegrastats(line) == watts


def test_hwmon_power_from_power_or_voltage_and_current(tmp_path):
    ina226 = tmp_path / "hwmon2"
    ina226.mkdir()
    (ina226 / "power1_input").write_text("5230000\n")  # microwatts (INA226 driver)
    assert device_runner.read_hwmon(str(ina226)) == pytest.approx(5.23)
    ina219 = tmp_path / "hwmon3"
    ina219.mkdir()
    (ina219 / "in1_input").write_text("5100\n")  # mV
    (ina219 / "curr1_input").write_text("980\n")  # mA
    assert device_runner.read_hwmon(str(ina219)) == pytest.approx(5.1 * 0.98)
    with pytest.raises(device_runner.RunnerError, match="not a power monitor"):
        device_runner.read_hwmon(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory):
    from edgefer.nn.model import FerModel

    return FerModel.load(tiny_model_set(tmp_path_factory.mktemp("bundle-models"))["cnn"])


@pytest.fixture(scope="module")
def blocker(tmp_path_factory):
    """A PYTHONPATH entry under which edgefer and torch cannot be imported: the runner must not need them."""
    folder = tmp_path_factory.mktemp("blocked")
    for name in ("edgefer", "torch"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the device')\n")
    return folder


def _run_on_device(bundle: Path, blocked: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    return subprocess.run([sys.executable, str(bundle / "run_on_device.py"), "--idle-s", "0.1", *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("target, args", [("rpi4", []), ("coral", ["--cpu"]), ("jetson-nano", []), ("ncs2", [])])
def test_the_runner_measures_each_artifact_as_edgefer_runs_it(target, args, tiny_cnn, blocker, tmp_path):
    from edgefer.targets import get_target
    from edgefer.targets.bundle import load_measurement, write_bundle

    chosen = get_target(target)
    if not chosen.available()[0]:
        pytest.skip(chosen.available()[1])
    manifest = write_bundle(chosen, tiny_cnn, tmp_path / target, "tiny-cnn")
    proc = _run_on_device(tmp_path / target, blocker, "--power-w", "6.0", "--idle-w", "2.5", "--threads", "1", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measurement = load_measurement(tmp_path / target / "measurement.json")
    with np.load(tmp_path / target / "testset.npz") as data:
        logits = chosen.run(tmp_path / target / "artifact", data["inputs"])
        expected = float(np.mean(logits.argmax(1) == data["labels"]))
    assert measurement["accuracy"] == expected and measurement["n"] == manifest["testset"]["n"]
    assert measurement["source"] == "measured" and len(measurement["seconds"]) == 200
    assert measurement["power"]["energy_j"] == pytest.approx(6.0 * measurement["latency_s"]["median"])
    assert measurement["power"]["dynamic_energy_j"] == pytest.approx(3.5 * measurement["latency_s"]["median"])
    assert measurement["model_digest"] == tiny_cnn.digest() and measurement["device"]["cpus"] == os.cpu_count()
    assert measurement["threads"] == 1 and measurement["pinned_cpus"] == sorted(os.sched_getaffinity(0))[:1]


def test_the_runner_names_a_missing_runtime_and_how_to_install_it(tiny_cnn, blocker, tmp_path):
    from edgefer.targets import get_target
    from edgefer.targets.bundle import write_bundle

    write_bundle(get_target("ncs2"), tiny_cnn, tmp_path / "ncs2", "tiny-cnn")
    (blocker / "openvino").mkdir(exist_ok=True)
    (blocker / "openvino" / "__init__.py").write_text("raise ImportError('no openvino here')\n")
    try:
        proc = _run_on_device(tmp_path / "ncs2", blocker)
    finally:
        (blocker / "openvino" / "__init__.py").unlink()
        (blocker / "openvino").rmdir()
    assert proc.returncode == 2 and proc.stderr == "error: no OpenVINO: pip install openvino\n"


def test_a_bundle_for_a_target_the_runner_cannot_run_is_refused(tiny_cnn, tmp_path):
    from edgefer.targets import get_target
    from edgefer.targets.bundle import write_bundle

    with pytest.raises(EdgeferError, match="loihi artifacts \\(snn\\) cannot be run by the device runner"):
        write_bundle(get_target("loihi"), tiny_cnn, tmp_path / "loihi", "tiny-cnn")


def test_measurements_merge_into_compare_and_foreign_ones_are_refused(tiny_cnn, blocker, tmp_path):
    from edgefer.bench.compare import CompareConfig, run_compare
    from edgefer.targets import get_target
    from edgefer.targets.bundle import write_bundle

    models = tiny_model_set(tmp_path / "models")
    from edgefer.nn.model import FerModel

    write_bundle(get_target("coral"), FerModel.load(models["cnn"]), tmp_path / "coral", "cnn")
    assert _run_on_device(tmp_path / "coral", blocker, "--cpu", "--power-w", "2.2").returncode == 0
    measurement = tmp_path / "coral" / "measurement.json"
    config = CompareConfig(dataset="ckplus", timesteps=2, models=models, measured=(measurement,))
    comparison = run_compare(config, tmp_path / "out", progress=False)
    coral = next(r for r in comparison.rows if r.target == "coral")
    recorded = json.loads(measurement.read_text())
    assert coral.source == "measured" and coral.latency_s == recorded["latency_s"]["median"] and coral.power_w == 2.2
    assert coral.figures["modeled"]["source"] == "modeled" and coral.figures["model_error"]["latency"] == pytest.approx(
        coral.figures["modeled"]["latency_s"] / coral.latency_s - 1)
    assert comparison.summary["headline"]["loihi_vs_coral"]["gray"]["sources"] == {"loihi": "modeled", "coral": "measured"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Measured on devices" in report and "(Coral measured, Loihi modeled)" in report
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**recorded, "model_digest": "0" * 20}))
    with pytest.raises(EdgeferError, match="model digest differs"):
        run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models, measured=(foreign,)), tmp_path / "out",
                    progress=False)
    for text, message in [("{not json", "not a readable measurement file"), ('{"format": "other"}', "not an edgefer measurement"),
                          (json.dumps({**recorded, "latency_s": {"median": -1}}), "impossible values")]:
        foreign.write_text(text)
        with pytest.raises(EdgeferError, match=message):
            run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models, measured=(foreign,)),
                        tmp_path / "out", progress=False)


# --- recalibration ----------------------------------------------------------------------------------------------
def _synthetic_networks(device_model) -> list[dict]:
    from edgefer.nn.spec import ArchSpec
    from edgefer.targets import costmodel
    from edgefer.targets.layers import op_table

    networks = []
    for filters in [(8, 16), (16, 32, 64), (32, 64, 128, 256), (24, 48), (64, 128)]:
        layers = op_table(ArchSpec(filters=filters, dense=(64,)).build(), (1, 48, 48))
        networks.append({"layers": layers, "in_values": 48 * 48, "out_values": 7,
                         "latency_s": float(costmodel.network_latency(device_model, layers, 48 * 48, 7))})
    return networks


def test_calibration_recovers_known_constants_from_synthetic_measurements(monkeypatch):
    from edgefer.targets import costmodel

    grid = costmodel.FIT_GRID
    true = costmodel.base_model("rpi4").with_values(compute_efficiency=float(grid["compute_efficiency"][30]),
                                                    per_layer_s=float(grid["per_layer_s"][10]))
    networks = _synthetic_networks(true)
    with_priors = costmodel.calibrate("rpi4", networks)
    errors = [abs(float(costmodel.network_latency(with_priors, n["layers"], 2304, 7)) / n["latency_s"] - 1) for n in networks]
    before = [abs(float(costmodel.network_latency(costmodel.fitted_model("rpi4"), n["layers"], 2304, 7)) / n["latency_s"] - 1)
              for n in networks]
    assert max(errors) < 0.15 and min(before) > 0.5  # published priors pull a little; the published fit was off by > 50 %
    monkeypatch.setattr(costmodel, "published_points", lambda: ())  # no priors: the measurements alone decide
    alone = costmodel.calibrate("rpi4", networks)
    assert (alone.compute_efficiency, alone.per_layer_s) == (true.compute_efficiency, true.per_layer_s)


def test_calibrate_writes_constants_that_compare_uses(tiny_cnn, blocker, tmp_path):
    from edgefer.bench.compare import CompareConfig, run_compare
    from edgefer.cli import app
    from edgefer.targets import costmodel, get_target
    from edgefer.targets.bundle import write_bundle
    from typer.testing import CliRunner

    models = tiny_model_set(tmp_path / "models")
    from edgefer.nn.model import FerModel

    write_bundle(get_target("rpi4"), FerModel.load(models["cnn"]), tmp_path / "rpi4", models["cnn"])
    assert _run_on_device(tmp_path / "rpi4", blocker).returncode == 0
    constants = tmp_path / "user_constants.json"
    result = CliRunner().invoke(app, ["targets", "calibrate", "--measured", str(tmp_path / "rpi4" / "measurement.json"),
                                      "--out", str(constants), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["devices"]["rpi4"]
    assert report["after"]["mdape_measured"] <= report["before"]["mdape_measured"]
    default = run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models), tmp_path / "a", progress=False)
    tuned = run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models, constants=constants), tmp_path / "a",
                        progress=False)
    latency = {c: next(r.latency_s for r in comparison.rows if r.target == "rpi4") for c, comparison in
               (("default", default), ("tuned", tuned))}
    assert latency["tuned"] != latency["default"] and "rpi4" not in tuned.summary["cached_stages"]
    assert costmodel.fitted_model("rpi4") == costmodel.fitted_model.__wrapped__("rpi4")  # nothing leaks after the run
    constants.write_text('{"format": "edgefer-constants/1", "devices": {"rpi4": {"constants": {"per_layer_s": -1}}}}')
    with pytest.raises(EdgeferError, match="not a usable constants file"):
        run_compare(CompareConfig(dataset="ckplus", timesteps=2, models=models, constants=constants), tmp_path / "a",
                    progress=False)
