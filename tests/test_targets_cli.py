"""``edgefer targets``, ``edgefer export``, ``edgefer bench``: outputs and clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from edgefer.cli import app
from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec

runner = CliRunner()
CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def run_main(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "edgefer.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    spec = ArchSpec(filters=(4,), convs_per_block=1, dense=(8,))
    return FerModel(spec, spec.build(), CLASSES).save(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_targets_lists_measured_and_modeled():
    result = runner.invoke(app, ["targets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["target"]: r for r in json.loads(result.output)}
    assert {"host", "gpu", "rpi4", "ncs2", "jetson-nano", "coral", "loihi"} <= set(rows)
    assert rows["coral"]["latency"] == "modeled" and rows["host"]["latency"] == "measured"
    assert rows["coral"]["validation"]["status"] == "validated"


def test_export_writes_an_artifact(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    result = runner.invoke(app, ["export", "--model", str(tiny_checkpoint), "--target", "jetson-nano", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest["format"] == "onnx" and (tmp_path / "model.onnx").is_file() and (tmp_path / "artifact.json").is_file()


def test_unknown_target_prints_one_error_line():
    """The real entry point: one line, exit 2, no traceback."""
    result = run_main("export", "--model", "ckplus-cnn", "--target", "tpu-v9", "--out", "x")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "unknown target 'tpu-v9'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["bench", "--model", "ckplus-cnn", "--target", "tpu-v9"], "unknown target"),
    (["export", "--model", "no-such-model", "--target", "coral", "--out", "x"], "unknown model"),
])
def test_bad_input_raises_edgefer_error(args, message):
    result = runner.invoke(app, args)
    assert isinstance(result.exception, EdgeferError) and message in str(result.exception)


def test_bench_without_a_model_card_is_a_clear_error(tiny_checkpoint):
    result = runner.invoke(app, ["bench", "--model", str(tiny_checkpoint), "--target", "rpi4", "--json"])
    assert isinstance(result.exception, EdgeferError) and "card does not record its dataset" in str(result.exception)


def test_bench_rows_on_a_shipped_model(data_dir):
    pytest.importorskip("onnxruntime")
    result = runner.invoke(app, ["bench", "--model", "ckplus-cnn", "--target", "rpi4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (row,) = report["rows"]
    assert row["target"] == "rpi4" and row["source"] == "modeled" and row["status"] == "ok"
    assert row["artifact"] == "tflite fp32" and row["accuracy_source"] == "measured"
    # the same FP32 network in another runtime: at most one image may flip
    assert 0 <= row["accuracy"] <= 1 and abs(row["accuracy"] - report["torch_accuracy"]) <= 1 / report["n_test"] + 1e-12
    assert row["energy_j"] == pytest.approx(row["power_w"] * row["latency_s"])
    assert row["fps"] == pytest.approx(1 / row["latency_s"])
