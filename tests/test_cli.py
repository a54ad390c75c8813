"""The ``edgefer`` command line: help, JSON outputs, and clean errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest
from typer.testing import CliRunner

from edgefer.cli import app
from edgefer.data.loaders import load_npz
from edgefer.errors import EdgeferError
from edgefer.nn.evaluate import evaluate
from edgefer.nn.spec import ArchSpec

COMMANDS = ["models", "eval", "train", "cv", "data", "arch"]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_main(*args, cwd=None):
    """Run the real entry point (edgefer.cli:main) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "edgefer.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_console_script_points_at_main():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("edgefer") == "edgefer.cli:main"


def test_top_level_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.stdout
    assert "Usage" in result.stdout and "--help" in result.stdout


def test_arch_loihi_json():
    result = invoke("arch", "loihi-study", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["params"] == 180167
    assert summary["macs"] == sum(row["macs"] for row in summary["layers"])
    assert [row["name"] for row in summary["layers"]][0] == "stem"


def test_arch_table_and_json_file(tmp_path):
    assert "loihi-study" in invoke("arch", "loihi-study").stdout
    path = tmp_path / "small.json"
    path.write_text(ArchSpec(filters=(4,), convs_per_block=1, batchnorm=False, dense=(), input_size=8,
                             num_classes=2).to_json())
    result = invoke("arch", path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["params"] == 40 + 130  # see test_spec's hand count


def test_data_json(ck_npz_int, ck_small):
    result = invoke("data", "--data", ck_npz_int, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["n"] == len(ck_small) == 70
    assert info["source"] == str(ck_npz_int)
    assert info["classes"] == ck_small.class_counts()
    sparsity = info["input_sparsity"]
    assert set(sparsity) == {"gray", "edges", "edges-x2"}
    assert sparsity["edges"] > 0.5 > sparsity["gray"]
    assert 1 <= info["near_duplicate_groups"] <= 70


def test_data_csv_split(fer_csv):
    result = invoke("data", "--data", fer_csv, "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 7


def test_eval_json(tiny_checkpoint, tiny_trained, ck_npz_int):
    result = invoke("eval", "--model", tiny_checkpoint, "--data", ck_npz_int, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    expected = evaluate(tiny_trained, load_npz(ck_npz_int))
    assert scores["n"] == 70
    assert scores["accuracy"] == pytest.approx(expected["accuracy"])
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert scores["input"] == "gray"
    assert scores["confusion"] == expected["confusion"]
    edges = json.loads(invoke("eval", "--model", tiny_checkpoint, "--data", ck_npz_int, "--input", "edges",
                              "--json").stdout)
    assert edges["input"] == "edges" and edges["n"] == 70


def test_eval_table(tiny_checkpoint, ck_folder):
    result = invoke("eval", "--model", tiny_checkpoint, "--data", ck_folder)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "n=70" in result.stdout


def test_models_command_runs():
    assert invoke("models").exit_code == 0
    assert invoke("models", "--details").exit_code == 0


def test_errors_surface_as_edgefer_error_in_process(tmp_path):
    result = invoke("data", "--data", tmp_path / "missing.npz")
    assert isinstance(result.exception, EdgeferError)
    result = invoke("train")
    assert isinstance(result.exception, EdgeferError) and "--recipe" in str(result.exception)


# --- the real entry point: exit code 2, 'error: ...' on stderr, no traceback ----------------------------

def assert_clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error" in proc.stderr.lower()
    joined = proc.stderr.replace("\n", "")  # rich may wrap long lines (inside a path or between words)
    spaced = " ".join(proc.stderr.split())
    for fragment in fragments:
        assert str(fragment) in joined or str(fragment) in spaced, proc.stderr


def test_main_missing_data_file(tmp_path):
    missing = tmp_path / "missing.npz"
    proc = run_main("data", "--data", missing)
    assert_clean_error(proc, missing, "no such file")
    assert proc.stdout == ""


def test_main_corrupt_npz_and_bad_checkpoint(tmp_path, ck_npz_int):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert_clean_error(run_main("data", "--data", corrupt), corrupt)
    not_a_model = tmp_path / "weights.safetensors"
    not_a_model.write_bytes(b"\x00" * 64)
    assert_clean_error(run_main("eval", "--model", not_a_model, "--data", ck_npz_int), not_a_model)


def test_main_help_exits_zero():
    proc = run_main("--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout


@pytest.mark.parametrize("args", [[], ["bogus-command"], ["data"], ["arch", "loihi-study", "--no-such-flag"]])
def test_main_usage_errors_without_traceback(args):
    proc = run_main(*args)
    assert "Traceback" not in proc.stderr
    assert proc.returncode in ((0, 2) if not args else (2,))  # bare `edgefer` shows help; bad usage: 2
    assert "Usage" in proc.stdout + proc.stderr


def test_main_error_keeps_long_path_on_one_line(tmp_path):
    missing = tmp_path / ("a_rather_long_folder_name_" * 3) / "and_an_equally_long_file_name.npz"
    proc = run_main("data", "--data", missing)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr


@pytest.mark.parametrize("folder", ["data[old]", "x[/y]"])
def test_main_error_message_with_brackets(tmp_path, folder):
    missing = tmp_path / folder / "ck.npz"
    proc = run_main("data", "--data", missing)
    assert_clean_error(proc, missing)


def test_main_eval_classes_shared_without_common_class(tmp_path, tiny_checkpoint, ck_small):
    data = tmp_path / "neutral_only.npz"
    np.savez(data, images=ck_small.images[:3], labels=np.zeros(3, np.int64), classes=np.array(["neutral"]))
    proc = run_main("eval", "--model", tiny_checkpoint, "--data", data, "--classes", "shared")
    assert_clean_error(proc, data, "share no class", "neutral", "happy")
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    assert_clean_error(run_main("eval", "--model", tiny_checkpoint, "--data", data, "--classes", "most"), "--classes")
