"""Hardware-aware search: target-shaped spaces, infeasible specs pruned before training, both
objectives end to end, resume after a real SIGKILL, two workers on one PostgreSQL study, CLI errors.

Every search here is tiny (1-3 epochs on a few dozen CK+48 images) so the file stays fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from edgefer.automl.search import hierarchical_cost, run_search
from edgefer.automl.space import Budget
from edgefer.automl.study import SearchSettings, open_storage, open_study
from edgefer.automl.report import show_study
from edgefer.automl.space import suggest
from edgefer.bench.compare import search_fronts
from edgefer.automl.study import rejecting_violations, search_target
from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import LOIHI_FER2013, LOIHI_STUDY, ArchSpec
from edgefer.nn.train import TrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)
POSTGRES_URL = os.environ.get("EDGEFER_TEST_POSTGRES_URL")
# Specs of at most 1 epoch on 48 images: quick trials that still go through every stage.
TINY = {"budget": Budget(1, 1), "subset": 48, "progress": False, "heartbeat_s": 1}


def sampled_specs(target, n: int) -> list[ArchSpec]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [suggest(study.ask(), target.search, Budget(1, 1), 7, TrainConfig())[0] for _ in range(n)]


def test_loihi_space_has_no_bias_no_maxpool_and_rejects_oversized_nets():
    loihi = search_target("loihi")
    for spec in sampled_specs(loihi, 40):
        assert not spec.bias and spec.downsample in ("avgpool", "stride2") and spec.activation == "relu"
    assert rejecting_violations(loihi, LOIHI_STUDY) == []  # the study's net: 116 cores, one chip
    assert {v.rule for v in rejecting_violations(loihi, ArchSpec(filters=(16, 32), downsample="maxpool"))} == {"no-maxpool"}
    assert {v.rule for v in rejecting_violations(loihi, ArchSpec(filters=(4, 8), dense=(16,), bias=True, batchnorm=False, downsample="stride2"))} == {"bias"}
    wide = ArchSpec(filters=(64, 128), downsample="stride2", bias=False, batchnorm=False)
    assert {v.rule for v in rejecting_violations(loihi, wide)} & {"multi-chip", "loihi-mapping"}
    # a search may accept nets on several chips (each chip's static power priced); errors stay errors
    assert {v.rule for v in rejecting_violations(loihi, LOIHI_FER2013)} == {"multi-chip"}
    assert rejecting_violations(loihi, LOIHI_FER2013, ("multi-chip",)) == []
    assert {v.rule for v in rejecting_violations(loihi, ArchSpec(filters=(16, 32), downsample="maxpool"),
                                                  ("multi-chip",))} == {"no-maxpool"}


def test_search_accepts_only_warnings_the_target_rejects(tmp_path):
    settings = SearchSettings("fer2013", "loihi", allowed_warnings=("multi-chip",), out=tmp_path)
    assert settings.command().endswith("--allow multi-chip") and settings.fingerprint()["allowed_warnings"] == ["multi-chip"]
    assert "allowed_warnings" not in SearchSettings("fer2013", "loihi", out=tmp_path).fingerprint()  # old studies resume
    with pytest.raises(EdgeferError, match="--allow no-maxpool: not a warning .* loihi search \\(bias, multi-chip\\)"):
        SearchSettings("ckplus", "loihi", allowed_warnings=("no-maxpool",), out=tmp_path)


def test_edge_targets_search_every_downsampling_and_coral_rejects_fallback():
    coral = search_target("coral")
    assert set(s.downsample for s in sampled_specs(coral, 40)) == {"maxpool", "avgpool", "stride2"}
    assert coral.search.rejected_warnings and search_target("rpi4").search.rejected_warnings == ()


def test_host_search_is_refused_with_the_reason():
    with pytest.raises(EdgeferError, match="host cannot be searched: its power is not measured here"):
        SearchSettings("ckplus", "host", trials=1, progress=False)


def test_hierarchical_cost_puts_accuracy_first():
    reference = 1e-3
    # one accuracy step beats any PDP; within a step the lower PDP wins
    assert hierarchical_cost(1.0, 100.0, reference, 0.01) < hierarchical_cost(0.985, 1e-9, reference, 0.01)
    assert hierarchical_cost(0.995, 1e-4, reference, 0.01) < hierarchical_cost(1.0, 2e-4, reference, 0.01)


def test_infeasible_spec_is_pruned_before_training(tmp_path, monkeypatch):
    import edgefer.nn.train as trainer
    from edgefer.targets.devices.loihi import LoihiTarget

    monkeypatch.setattr(LoihiTarget, "search_cost_images", 8)  # the simulated Loihi cost, kept small
    trained = []
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", lambda spec, *a, **k: trained.append(spec) or real_train(spec, *a, **k))
    settings = SearchSettings("ckplus", "loihi", trials=1, out=tmp_path, **TINY)
    # a first trial far over one chip's cores (the sampler proposes it first)
    oversized = {"blocks": 2, "convs_per_block": 2, "base_filters": 32, "width_growth": 2, "kernel_size": 5,
                 "downsample": "stride2", "batchnorm": False, "head": "flatten", "dense_layers": 0, "dropout": 0.0,
                 "lr": 3e-3, "batch_size": 32}
    open_study(settings).enqueue_trial(oversized)
    summary = run_search(settings)
    study = open_study(settings, create=False)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.PRUNED and "infeasible" in first.user_attrs
    assert "val_curve" not in first.user_attrs and ArchSpec.from_dict(first.user_attrs["arch"]) not in trained
    assert summary["finished_trials"] == 1 and summary["trial_states"]["infeasible"] >= 1
    assert len(trained) == 1 and rejecting_violations(search_target("loihi"), trained[0]) == []


def test_a_study_resumes_across_tuple_settings_and_new_training_options_but_not_changed_ones(tmp_path):
    settings = SearchSettings("ckplus", "loihi", trials=1, out=tmp_path, **TINY)
    study = open_study(settings)
    open_study(settings)  # reopened: tuples in the training settings compare as the stored lists
    recorded = study.user_attrs["settings"]
    older = dict(recorded, base_train_config={k: v for k, v in recorded["base_train_config"].items()
                                              if k != "spiking_timesteps"})
    study.set_user_attr("settings", older)  # a study started before that training option existed
    open_study(settings)
    study.set_user_attr("settings", dict(recorded, base_train_config=dict(recorded["base_train_config"], lr=1.0)))
    with pytest.raises(EdgeferError, match=r"other settings \(base_train_config\)"):
        open_study(settings)


@pytest.mark.parametrize("objective", ["hierarchical", "pareto"])
def test_search_writes_table_plot_and_best_checkpoint(tmp_path, objective):
    settings = SearchSettings("ckplus", "coral", trials=3, objective=objective, out=tmp_path, **TINY)
    summary = run_search(settings)
    assert summary["finished_trials"] == 3 and summary["pareto"]
    lines = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(lines) == 1 + sum(summary["trial_states"].values()) and "space.base_filters" in lines[0]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = FerModel.load(tmp_path / "best.safetensors")
    card = json.loads((tmp_path / "best.json").read_text())
    assert best.spec.to_dict() == card["arch"] == summary["best"]["arch"]
    assert card["scores"]["test_n"] == 141 and card["cost"]["source"] == "modeled"
    # the recorded command reruns this study: its reduced budget and subset are part of it
    assert card["command"] == summary["command"] == (f"edgefer search --target coral --dataset ckplus --trials 3 "
                                                     f"--objective {objective} --min-epochs 1 --max-epochs 1 --subset 48")
    assert card["search"]["folder"] == str(tmp_path.resolve()) and summary["settings"]["subset"] == 48
    # a comparison that runs this checkpoint finds its study's front and plot through the card
    front = search_fronts({"coral": best})["coral"]
    assert [p["trial"] for p in front["front"]] == [p["trial"] for p in summary["pareto"]]
    assert front["best_trial"] == summary["best"]["trial"] and front["plot"] == str(tmp_path.resolve() / "pareto.png")
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(EdgeferError, match=r"summary\.json: not a search summary"):
        search_fronts({"coral": best})
    values = open_study(settings, create=False).best_trials[0].values
    assert len(values) == (1 if objective == "hierarchical" else 3)
    shown = show_study(settings)
    assert shown["best"]["trial"] == summary["best"]["trial"] and len(shown["pareto"]) == len(summary["pareto"])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgefer.cli", "search", *args]


def _trial_log(folder) -> list[tuple[int, str]]:
    """(trial number, worker) of each trial a worker trained, from its audit log."""
    lines = (folder / "trial_runs.log").read_text().splitlines()
    return [(int(number), worker) for number, _, worker, _ in (line.split("\t") for line in lines)]


def _finished(study) -> list[int]:
    return sorted(t.number for t in study.trials
                  if t.state.name in ("COMPLETE", "PRUNED") and "infeasible" not in t.user_attrs)


def _running_after_complete(study) -> int | None:
    """The number of a trial that is mid-training (one epoch reported) once another has completed."""
    try:
        trials = study.get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the worker holds the SQLite lock for a moment
        return None
    running = [t.number for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("val_curve")]
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    return running[0] if completed and running else None


def _wait_for_study(settings, worker):
    while worker.poll() is None:
        time.sleep(0.1)
        try:
            return open_study(settings, create=False)
        except Exception:  # noqa: BLE001 - the worker is still creating the database and the study
            continue
    return None


def test_resume_after_sigkill_keeps_every_finished_trial(tmp_path):
    trials = 3
    command = _cli("--target", "coral", "--trials", str(trials), "--min-epochs", "3", "--max-epochs", "3",
                   "--subset", "64", "--heartbeat", "1", "--out", str(tmp_path), "--quiet")
    settings = SearchSettings("ckplus", "coral", trials=trials, budget=Budget(3, 3), subset=64, out=tmp_path,
                              heartbeat_s=1)
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = None
    try:
        study = _wait_for_study(settings, worker)
        deadline = time.time() + 90
        while study is not None and killed is None and worker.poll() is None and time.time() < deadline:
            time.sleep(0.05)
            killed = _running_after_complete(study)
        if killed is not None:
            worker.send_signal(signal.SIGKILL)  # mid-trial: it has trained at least one epoch
    finally:
        worker.kill()
        worker.wait()
    assert killed is not None, "never saw a running trial after a completed one: " + worker.stderr.read().decode()[-2000:]
    before = {t.number: t.values for t in open_study(settings, create=False).trials if t.state.name == "COMPLETE"}
    time.sleep(2.5)  # past the heartbeat grace period (2 x 1 s): the killed trial is stale
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    study = open_study(settings, create=False)
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed].state == optuna.trial.TrialState.FAIL
    finished = _finished(study)
    assert len(finished) == trials
    assert all(by_number[n].values == values for n, values in before.items())  # nothing lost or redone
    log = [number for number, _ in _trial_log(tmp_path)]
    assert sorted(log) == finished and killed not in log  # every finished trial ran exactly once


@pytest.mark.skipif(not POSTGRES_URL, reason="EDGEFER_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
def test_two_workers_share_one_postgres_study(tmp_path):
    trials = 4
    settings = SearchSettings("ckplus", "coral", trials=trials, budget=Budget(2, 2), subset=64, storage=POSTGRES_URL,
                              out=tmp_path / "a", heartbeat_s=1)
    try:
        optuna.delete_study(study_name=settings.study_name, storage=open_storage(POSTGRES_URL))  # fresh on a reused server
    except KeyError:
        pass
    workers = [subprocess.Popen(_cli("--target", "coral", "--trials", str(trials), "--min-epochs", "2", "--max-epochs", "2",
                                     "--subset", "64", "--heartbeat", "1", "--storage", POSTGRES_URL,
                                     "--out", str(tmp_path / name), "--quiet"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b")]  # separate folders: as if on two machines
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
    study = open_study(settings, create=False)
    finished = _finished(study)
    # A worker starts a trial only while finished + running < N; two workers that check in the same
    # instant can overshoot by one.
    assert trials <= len(finished) <= trials + 1
    logs = [_trial_log(tmp_path / name) for name in ("a", "b")]
    assert sorted(number for log in logs for number, _ in log) == finished  # each trial ran once, on one worker
    # Which worker runs how many trials depends on how fast each starts (one may find the study full and
    # run none, which is right too): not asserted, so the test does not depend on timing.
    by_number = {t.number: t for t in study.trials}
    assert all(by_number[number].user_attrs["worker"] == worker for log in logs for number, worker in log)


@pytest.mark.parametrize("args, message", [
    (["--target", "tpu9000", "--trials", "1"], "unknown target 'tpu9000'"),
    (["--target", "coral", "--objective", "fastest"], "unknown objective 'fastest'"),
    (["--target", "coral", "--trials", "0"], "--trials must be at least 1"),
    (["show", "--target", "nope"], "unknown target 'nope'"),
    (["--target", "host", "--trials", "1"], "host cannot be searched"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2(args, message, monkeypatch, capsys):
    from edgefer.cli import main

    monkeypatch.setattr(sys, "argv", ["edgefer", "search", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
