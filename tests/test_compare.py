"""edgefer compare: results.json schema, stage cache, headline ratios, report files, bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from edgefer.bench.compare import CompareConfig, comparison_stages, headline, run_compare
from edgefer.bench.report import write_report
from edgefer.pareto import pareto_front
from edgefer.errors import EdgeferError
from compare_fixtures import stable_rows, tiny_model, tiny_model_set

ROW_KEYS = {"target", "input", "accuracy", "latency_s", "fps", "power_w", "energy_j", "source"}
BEFORE_REGISTRY = Path(__file__).parent / "data" / "compare_before_registry.json"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return tiny_model_set(tmp_path_factory.mktemp("compare-models"))


@pytest.fixture(scope="module")
def compared(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-out")
    config = CompareConfig(dataset="ckplus", timesteps=4, models=tiny_models)
    first = run_compare(config, out, progress=False).summary
    second = run_compare(config, out, progress=False).summary
    return out, first, second


def _report_lines(markdown: str) -> tuple[list[str], list[str]]:
    table = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith(("| host", "| target"))]
    head = markdown.split("## Headline")[1].split("## Plots")[0]
    return table, [line for line in head.strip().splitlines() if line.startswith("- ") and "Real time" not in line]


def _assert_same_as_before(dataset: str, out: Path) -> None:
    """Every row, table line and headline sentence of the pre-registry code (kept from its run on the same
    tiny models) is still there with the same values; targets added since may add rows."""
    before = json.loads(BEFORE_REGISTRY.read_text())
    rows = {(r["target"], r["input"]): r for r in stable_rows(json.loads((out / "results.json").read_text()))}
    for old in before["results"][dataset]:
        new = rows[(old["target"], old["input"])]
        assert {k: new.get(k) for k in old} == old, (old["target"], old["input"])
    table, head = _report_lines((out / "report.md").read_text())
    assert set(before["report_rows"][dataset]) <= set(table)
    assert before["headline"][dataset] == head


def test_compare_output_is_the_same_as_before_the_registry(compared):
    _assert_same_as_before("ckplus", compared[0])


def test_fer2013_compare_output_is_the_same_as_before_the_registry(tmp_path, data_dir):
    models = tiny_model_set(tmp_path, "fer2013")
    run_compare(CompareConfig(dataset="fer2013", timesteps=4, models=models), tmp_path / "out", progress=False)
    _assert_same_as_before("fer2013", tmp_path / "out")


def test_results_json_has_one_row_per_target_and_input(compared):
    out, first, _ = compared
    rows = json.loads((out / "results.json").read_text())
    assert isinstance(rows, list)
    keys = [(r["target"], r["input"]) for r in rows]
    assert keys == [(s.target, "edges" if s.role == "edges" else "gray") for s in comparison_stages(["host"])]
    assert keys[:1] == [("host", "gray")] and keys[-2:] == [("loihi", "gray"), ("loihi", "edges")]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["status"] == "ok"
        assert 0.0 <= row["accuracy"] <= 1.0 and row["n"] == 141
        assert row["fps"] == pytest.approx(1.0 / row["latency_s"])
        assert row["source"] in ("measured", "modeled")
    by_target = {r["target"]: r for r in rows}
    assert by_target["host"]["source"] == "measured" and by_target["host"]["power_w"] is None
    for name in ("rpi4", "ncs2", "jetson-nano", "coral", "loihi"):
        row = by_target[name]
        assert row["source"] == "modeled" and row["citations"], name
        assert row["energy_j"] == pytest.approx(row["power_w"] * row["latency_s"], rel=1e-6)
    assert by_target["coral"]["artifact"].endswith("int8")
    loihi = [r for r in rows if r["target"] == "loihi"]
    assert all(r["accuracy_source"] == "simulated" and r["layers"] and r["spikes_per_image"] >= 0 for r in loihi)
    assert loihi[1]["input_sparsity"] > loihi[0]["input_sparsity"]  # edge maps are sparser than grayscale
    assert first["absent_targets"].keys() == {"gpu"}


def test_report_files_are_written_and_self_contained(compared):
    out, first, _ = compared
    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(comparison_stages(["host"]))
    html = (out / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 6
    assert not re.search(r'src="(?!data:)', html)  # nothing to fetch: one file carries the report
    markdown = (out / "report.md").read_text()
    assert "| coral | gray |" in markdown and "Headline" in markdown
    assert "## Loihi against measured boards" in markdown and "blouw2019-kws" in markdown
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["headline"]["loihi_vs_coral"]) == {"gray", "edges"}
    assert {p.name for p in (out / "plots").iterdir()} == {"accuracy.png", "latency_fps.png", "power_energy.png",
                                                          "accuracy_energy.png", "spikes_per_layer.png",
                                                          "timestep_sweep.png"}


def test_a_searched_model_brings_its_study_front_into_the_report(compared, tmp_path):
    out, _, _ = compared
    rows = json.loads((out / "results.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["searches"] == {}  # shipped-style tiny models: no study behind them, no section
    summary["searches"] = {"loihi-gray": {
        "folder": str(tmp_path), "study": "ckplus-loihi-pareto", "finished_trials": 30,
        "command": "edgefer search --target loihi --dataset ckplus --trials 30 --objective pareto",
        "trial_states": {"complete": 28, "pruned": 2}, "best_trial": 7,
        "reference": {"model": "ckplus-loihi", "val_accuracy": 0.99, "latency_s": 2e-3, "energy_j": 9e-4},
        "front": [{"trial": 7, "val_accuracy": 0.99, "snn_accuracy": 1.0, "latency_s": 1.7e-3, "power_w": 0.2,
                   "energy_j": 3.8e-4, "params": 1000, "macs": 5000, "cores": 90}],
        "plot": str(out / "plots" / "accuracy.png")}}
    write_report(rows, summary, tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    section = markdown.split("## AutoML search")[1].split("## References")[0]
    assert "best trial (7) of the study ckplus-loihi-pareto" in section and "trials: 28 complete, 2 pruned; 30 count as finished" in section
    assert "| 7 | 99.00 | 100.0 | 1.700 | 0.200 | 0.380 | 1,000 | 5,000 | 90 |" in section
    assert (tmp_path / "report" / "plots" / "search_loihi-gray.png").read_bytes() == (out / "plots" / "accuracy.png").read_bytes()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>AutoML search</h2>" in html and html.count("data:image/png;base64,") == 7


def test_rerun_reuses_every_finished_stage(compared):
    out, first, second = compared
    assert first["cached_stages"] == []
    assert second["cached_stages"] == [s.name for s in comparison_stages(["host"])]
    assert second["cached_stages"][-2:] == ["loihi-gray", "loihi-edges"]
    assert (out / "results.json").read_text()  # rewritten from the cached rows


def test_changed_inputs_recompute_only_their_stages(compared, tiny_models):
    out, _, _ = compared
    summary = run_compare(CompareConfig(dataset="ckplus", timesteps=3, models=tiny_models), out, progress=False).summary
    assert summary["cached_stages"] == [s.name for s in comparison_stages(["host"]) if s.target != "loihi"]
    rows = json.loads((out / "results.json").read_text())
    assert all(r["artifact"] == "SNN T=3 loihi" for r in rows if r["target"] == "loihi")


def test_headline_ratios_and_realtime_from_rows():
    def row(target, input_mode, power, latency, accuracy, **extra):
        return {"target": target, "input": input_mode, "status": "ok", "power_w": power, "latency_s": latency,
                "energy_j": power * latency, "fps": 1 / latency, "accuracy": accuracy, **extra}

    rows = [row("coral", "gray", 2.0, 1e-3, 0.99),
            row("loihi", "gray", 0.02, 10e-3, 0.98, dynamic_energy_j=1e-4, spikes_per_image=100, input_sparsity=0.0),
            row("loihi", "edges", 0.01, 50e-3, 0.99, dynamic_energy_j=4e-4, spikes_per_image=50, input_sparsity=0.8)]
    head = headline(rows)
    gray = head["loihi_vs_coral"]["gray"]
    assert gray["power_ratio"] == pytest.approx(100.0)
    assert gray["energy_ratio"] == pytest.approx(2e-3 / 2e-4)
    assert gray["energy_ratio_dynamic_only"] == pytest.approx(2e-3 / 1e-4)
    assert gray["accuracy_points"] == pytest.approx(-1.0)
    assert head["edges_vs_gray"]["spikes_change"] == pytest.approx(-0.5)
    assert head["all_realtime"] is False and head["not_realtime"] == ["loihi/edges"]  # 20 FPS < 28


def test_headline_with_a_silent_gray_net_has_no_spike_ratio():
    from edgefer.bench.report import explain_headline

    def loihi(input_mode, spikes):
        return {"target": "loihi", "input": input_mode, "status": "ok", "power_w": 0.1, "latency_s": 1e-3,
                "energy_j": 1e-4, "fps": 1e3, "accuracy": 0.5, "dynamic_energy_j": 5e-5, "spikes_per_image": spikes,
                "input_sparsity": 0.5, "model": "m", "params": 1, "static_power_w": 0.029}

    rows = [loihi("gray", 0.0), loihi("edges", 10.0)]
    head = headline(rows)
    assert head["edges_vs_gray"]["spikes_change"] is None
    assert any("spikes n/a (no spikes with gray input)" in line
               for line in explain_headline({"headline": head}, rows))


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.9), (2.0, 0.95), (3.0, 0.93), (0.5, 0.5), (2.0, 0.90)]  # (energy: low, accuracy: high)
    assert pareto_front(points, maximise=(False, True)) == [0, 1, 3]
    assert pareto_front([(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)], maximise=(True, False, False)) == [0, 1]  # ties stay
    assert pareto_front([(0.9, 2.0, 1.0), (0.9, 1.0, 1.0)], maximise=(True, False, False)) == [1]


def test_compare_rejects_bad_input(tiny_models, tmp_path):
    with pytest.raises(EdgeferError, match="unknown dataset 'mnist'"):
        run_compare(CompareConfig(dataset="mnist"), tmp_path / "o", progress=False)
    fer_model = tiny_model(tmp_path / "fer.safetensors", dataset="fer2013", downsample="maxpool")
    with pytest.raises(EdgeferError, match="trained on fer2013, not ckplus"):
        run_compare(CompareConfig(dataset="ckplus", models={**tiny_models, "cnn": str(fer_model)}), tmp_path / "o",
                    progress=False)


def test_demo_without_video_names_where_it_looked(tmp_path):
    from edgefer.bench.command import demo_video

    with pytest.raises(EdgeferError, match=str(tmp_path / "video" / "WolfgangLanger_Pexels.mp4")):
        demo_video(tmp_path)


def test_compare_cli_unknown_dataset_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefer.cli", "compare", "--dataset", "mnist", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: unknown dataset 'mnist'; choose one of ckplus, fer2013" in proc.stderr


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="headless Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(compared):
    out, _, _ = compared
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "render_report.py"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.png").stat().st_size > 10_000


def test_code_digest_follows_the_target_files(tmp_path, monkeypatch):
    from edgefer.bench import compare
    from edgefer.targets import get_target

    fake_root = tmp_path / "edgefer"
    (fake_root / "bench").mkdir(parents=True)
    (fake_root / "targets" / "devices").mkdir(parents=True)
    (fake_root / "snn").mkdir(parents=True)
    (fake_root / "targets" / "devices" / "coral.py").write_text("A = 1\n")
    (fake_root / "targets" / "devices" / "coral.json").write_text("{}\n")
    monkeypatch.setattr(compare, "__file__", str(fake_root / "bench" / "compare.py"))
    coral, loihi = get_target("coral"), get_target("loihi")
    before = compare.code_digest(coral), compare.code_digest(loihi)
    assert (compare.code_digest(coral), compare.code_digest(loihi)) == before
    (fake_root / "snn" / "simulate.py").write_text("B = 2\n")  # the simulator: spiking rows only
    assert compare.code_digest(coral) == before[0] and compare.code_digest(loihi) != before[1]
    (fake_root / "targets" / "devices" / "coral.json").write_text('{"coral": 2}\n')  # a changed cost constant
    assert compare.code_digest(coral) != before[0]


def test_search_mode_takes_each_targets_best_checkpoint(tiny_models, tmp_path, monkeypatch):
    from edgefer.bench.compare import searched_models

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeferError, match="edgefer search --target coral --dataset ckplus --objective hierarchical"):
        searched_models("ckplus")
    from edgefer.targets import target_classes

    searched = [(c.name, "gray" if c.role == "neuromorphic" else "cnn") for c in target_classes(searchable=True)
                if c.role != "host"]
    for target, source in searched:
        folder = tmp_path / "runs" / "search" / f"ckplus-{target}-hierarchical"
        folder.mkdir(parents=True)
        shutil.copy(tiny_models[source], folder / "best.safetensors")
    models = searched_models("ckplus")
    config = CompareConfig(dataset="ckplus", models=models)
    assert config.model_for("coral", "cnn").endswith("ckplus-coral-hierarchical/best.safetensors")
    assert config.model_for("loihi-gray", "gray").endswith("ckplus-loihi-hierarchical/best.safetensors")
    assert config.model_for("loihi-edges", "edges") == "ckplus-loihi-edges-qcfs"  # no input mode in the search space
    assert config.model_for("host", "cnn") == "ckplus-cnn"


def test_model_option_picks_a_net_per_role_and_refuses_unknown_keys(tmp_path):
    from edgefer.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["compare", "--dataset", "ckplus", "--out", str(tmp_path / "o"), "--model",
                                      "grey=ckplus-loihi"])
    assert result.exit_code != 0 and "no such role" in str(result.exception)
    result = CliRunner().invoke(app, ["compare", "--dataset", "ckplus", "--out", str(tmp_path / "o"), "--model", "gray"])
    assert result.exit_code != 0 and "ROLE=MODEL" in str(result.exception)
