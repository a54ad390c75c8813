"""``edgefer live``: sources, tracking, classifier backends, outputs and errors on the shared videos and photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgefer.cli import app
from edgefer.errors import EdgeferError
from edgefer.live.pipeline import LiveConfig, LivePipeline, format_summary, run_live
from edgefer.live.sources import Frame, VideoSource, open_source
from edgefer.live.tracking import FaceTracker, iou, suppress_nested

MODEL = "fer2013-cnn"
FER_CLASSES = {"anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral"}
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Exported ONNX models go to a temporary cache, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("onnx_cache")
        patch.setenv("EDGEFER_CACHE", str(path))
        patch.delenv("DISPLAY", raising=False)  # no window in tests, even on a desktop
        patch.delenv("WAYLAND_DISPLAY", raising=False)
        yield path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


# --- whole pipeline on the shared videos ------------------------------------------------------------

def test_single_face_video_writes_annotated_video_and_jsonl(tmp_path, video_dir):
    out, jsonl = tmp_path / "annotated.mp4", tmp_path / "preds.jsonl"
    summary = run_live(str(video_dir / "single_face.mp4"), LiveConfig(model=MODEL, out=out, jsonl=jsonl))
    assert summary["frames"] == 72 and summary["broken_frames"] == 0
    assert summary["face_found_rate"] >= 0.9
    assert summary["tracks"] == 1  # one person, one track
    assert summary["backend"] == "onnxruntime"
    assert summary["fps"] > 0 and summary["latency_ms"]["classify"]["n"] == summary["frames_with_face"]
    assert summary["latency_ms"]["detect"]["n"] == summary["detections_run"] < summary["frames"]  # not every frame

    records = read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(72))
    assert all(b >= a for a, b in zip([r["time"] for r in records], [r["time"] for r in records][1:]))
    faces = [f for r in records for f in r["faces"]]
    assert len(faces) == summary["faces"] >= 65
    for face in faces:
        assert face["label"] in FER_CLASSES
        assert set(face["probabilities"]) == FER_CLASSES
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=2e-3)
        assert face["confidence"] == max(face["probabilities"].values())
        assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
        x, y, w, h = face["box"]
        assert w > 40 and h > 40 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 360

    frames = read_video(out)
    assert len(frames) == 72 and frames[0].shape == (360, 640, 3)
    # The annotation is drawn: the written frames differ from the source frames around the box.
    source = read_video(video_dir / "single_face.mp4")
    x, y, w, h = records[0]["faces"][0]["box"]
    edge = np.abs(frames[0][y : y + 3, x : x + w].astype(int) - source[0][y : y + 3, x : x + w].astype(int)).mean()
    assert edge > 20


def test_no_face_video_emits_frames_without_faces(tmp_path, video_dir):
    jsonl = tmp_path / "preds.jsonl"
    summary = run_live(str(video_dir / "no_face.mp4"), LiveConfig(model=MODEL, jsonl=jsonl))
    records = read_jsonl(jsonl)
    assert summary["frames"] == len(records) > 50
    assert summary["faces"] == 0 and summary["face_found_rate"] == 0.0 and summary["labels"] == {}
    assert all(r["faces"] == [] for r in records)
    assert "classify" not in summary["latency_ms"]


def test_face_that_appears_and_disappears(tmp_path, video_dir):
    jsonl = tmp_path / "preds.jsonl"
    summary = run_live(str(video_dir / "face_noface.mov"), LiveConfig(model=MODEL, jsonl=jsonl))
    present = np.array([bool(r["faces"]) for r in read_jsonl(jsonl)])
    assert 0.2 < summary["face_found_rate"] < 0.8
    # the face is there at the start and gone at the end, and the switch happens once
    assert present[:20].all() and not present[-20:].any()
    assert np.count_nonzero(np.diff(present.astype(int))) == 1


def test_max_frames_and_detection_interval(video_dir):
    summary = run_live(str(video_dir / "single_face.mp4"), LiveConfig(model=MODEL, max_frames=10, detect_every=3))
    assert summary["frames"] == 10
    assert summary["detections_run"] == 4  # frames 0, 3, 6, 9


def test_broken_frame_mid_video_is_skipped_and_counted(tmp_path, video_dir):
    """An MJPG AVI whose 6th frame has its JPEG header wiped: decoding fails for that frame only."""
    frames = read_video(video_dir / "single_face.mp4")[:12]
    path = tmp_path / "broken.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 12
    data[starts[5] : starts[5] + 2000] = bytes(2000)
    path.write_bytes(bytes(data))

    jsonl = tmp_path / "preds.jsonl"
    summary = run_live(str(path), LiveConfig(model=MODEL, jsonl=jsonl))
    assert summary["broken_frames"] == 1
    assert summary["frames"] == 11
    assert [r["frame"] for r in read_jsonl(jsonl)] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]


# --- photos: file, folder, glob -----------------------------------------------------------------------

def test_photo_folder_finds_every_face_and_writes_annotated_images(tmp_path, images_dir):
    out, jsonl = tmp_path / "annotated", tmp_path / "preds.jsonl"
    summary = run_live(str(images_dir), LiveConfig(model=MODEL, out=out, jsonl=jsonl))
    records = {os.path.basename(r["image"]): r for r in read_jsonl(jsonl)}
    assert set(records) == {"BWPictureHuman.jpg", "multi_face.jpg", "single_face.jpg"}
    assert all(r["image"] == str(images_dir / name) for name, r in records.items())  # the path, not only the name
    assert len(records["single_face.jpg"]["faces"]) == 1
    multi = records["multi_face.jpg"]["faces"]
    assert len(multi) >= 3
    boxes = [f["box"] for f in multi]
    assert all(iou(a, b) < 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1 :])  # distinct faces
    assert summary["frames"] == 3 and summary["faces"] == sum(len(r["faces"]) for r in records.values())
    for name in records:
        written = cv2.imread(str(out / name))
        assert written is not None and written.shape == cv2.imread(str(images_dir / name)).shape


def test_jsonl_of_a_folder_carries_each_photo_path_as_given(tmp_path, images_dir, monkeypatch):
    folder = tmp_path / "two photos"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        shutil.copy(images_dir / name, folder / name)
    monkeypatch.chdir(tmp_path)  # a relative source: the records keep it relative
    out, jsonl = tmp_path / "annotated", tmp_path / "preds.jsonl"
    result = runner.invoke(app, ["live", "two photos", "--jsonl", str(jsonl), "--out", str(out), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    images = [r["image"] for r in read_jsonl(jsonl)]
    assert images == [os.path.join("two photos", "multi_face.jpg"), os.path.join("two photos", "single_face.jpg")]
    assert sorted(p.name for p in out.iterdir()) == ["multi_face.jpg", "single_face.jpg"]  # output names: the stems


def test_single_photo_to_annotated_image_and_glob(tmp_path, images_dir):
    out = tmp_path / "single.png"
    summary = run_live(str(images_dir / "single_face.jpg"), LiveConfig(model=MODEL, out=out))
    assert summary["frames"] == 1 and summary["faces"] == 1
    assert cv2.imread(str(out)) is not None

    summary = run_live(str(images_dir / "*_face.jpg"), LiveConfig(model=MODEL))
    assert summary["frames"] == 2 and summary["faces"] >= 4  # single_face.jpg + multi_face.jpg


def test_all_faces_of_a_frame_go_to_the_classifier_in_one_call(images_dir):
    from edgefer.live.backends import make_classifier
    from edgefer.nn.zoo import load_model

    model = load_model(MODEL)
    classifier = make_classifier(model, "torch")
    batches = []
    original = classifier.predict_proba

    def counting(inputs):
        batches.append(inputs.shape)
        return original(inputs)

    classifier.predict_proba = counting
    pipeline = LivePipeline(classifier, model.input_mode, LiveConfig(), still_images=True)
    faces = pipeline.process(Frame(0, 0.0, cv2.imread(str(images_dir / "multi_face.jpg"))))
    assert len(faces) >= 3
    assert batches == [(len(faces), 1, 48, 48)]


def test_onnxruntime_matches_torch(images_dir):
    from edgefer.data.faces import crop_face, detect_faces
    from edgefer.data.preprocess import prepare_input
    from edgefer.live.backends import make_classifier
    from edgefer.nn.zoo import load_model

    model = load_model(MODEL)
    gray = cv2.imread(str(images_dir / "multi_face.jpg"), cv2.IMREAD_GRAYSCALE)
    inputs = prepare_input(np.stack([crop_face(gray, b) for b in detect_faces(gray)]), model.input_mode)
    ort_probs = make_classifier(model, "onnxruntime").predict_proba(inputs)
    torch_probs = make_classifier(model, "torch").predict_proba(inputs)
    assert ort_probs.shape == (len(inputs), 7)
    np.testing.assert_allclose(ort_probs, torch_probs, atol=1e-4)
    np.testing.assert_allclose(torch_probs, model.predict_proba(np.stack([crop_face(gray, b) for b in detect_faces(gray)])),
                               atol=1e-5)


def test_openvino_matches_torch(images_dir):
    pytest.importorskip("openvino")
    from edgefer.data.faces import crop_face, detect_faces
    from edgefer.data.preprocess import prepare_input
    from edgefer.live.backends import make_classifier
    from edgefer.nn.zoo import load_model

    model = load_model(MODEL)
    gray = cv2.imread(str(images_dir / "multi_face.jpg"), cv2.IMREAD_GRAYSCALE)
    inputs = prepare_input(np.stack([crop_face(gray, b) for b in detect_faces(gray)]), model.input_mode)
    ov_probs = make_classifier(model, "openvino").predict_proba(inputs)
    np.testing.assert_allclose(ov_probs, make_classifier(model, "torch").predict_proba(inputs), atol=1e-3)


def test_snn_backend_labels_faces_of_a_video(video_dir, tmp_path):
    """The spiking backend runs the Loihi-style net end to end; its labels are the spike readout's, and its
    confidence is a softmax of estimated logits, not of spike counts (which gave 1.00 on every face)."""
    from edgefer.live.pipeline import LiveConfig, run_live

    jsonl = tmp_path / "snn.jsonl"
    summary = run_live(str(video_dir / "single_face.mp4"),
                       LiveConfig(model="ckplus-loihi", backend="snn", max_frames=6, detect_every=3, jsonl=jsonl))
    assert summary["backend"] == "snn"
    assert summary["faces"] > 0
    confidences = [face["confidence"] for record in read_jsonl(jsonl) for face in record["faces"]]
    assert confidences and max(confidences) < 0.999


def test_snn_backend_exports_once_into_the_cache_and_an_interrupted_export_leaves_no_entry(monkeypatch, tmp_path):
    from edgefer.live.backends import SpikingClassifier, cache_dir
    from edgefer.nn.zoo import load_model
    from edgefer.targets.devices.loihi import LoihiTarget

    monkeypatch.setenv("EDGEFER_CACHE", str(tmp_path))
    model = load_model("ckplus-loihi")
    real_export = LoihiTarget.export

    def interrupted(self, model, out_dir, calibration=None):
        real_export(self, model, out_dir, calibration)
        raise KeyboardInterrupt

    monkeypatch.setattr(LoihiTarget, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SpikingClassifier(model)
    assert list((cache_dir() / "snn").iterdir()) == []
    monkeypatch.setattr(LoihiTarget, "export", real_export)
    first = SpikingClassifier(model)
    assert first.artifact.path.parent == cache_dir() / "snn" / model.digest()
    monkeypatch.setattr(LoihiTarget, "export", lambda *args, **kwargs: pytest.fail("exported again"))
    inputs = np.random.default_rng(0).random((3, 1, 48, 48), dtype=np.float32)
    np.testing.assert_array_equal(SpikingClassifier(model).predict_proba(inputs), first.predict_proba(inputs))


# --- tracking and smoothing -------------------------------------------------------------------------

def test_iou_and_nested_box_suppression():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    kept = suppress_nested([(10, 10, 20, 20), (0, 0, 100, 100), (200, 0, 50, 50)])
    assert kept == [(0, 0, 100, 100), (200, 0, 50, 50)]


def test_tracker_keeps_confirmed_faces_through_misses_and_drops_one_off_detections():
    tracker = FaceTracker(max_missed=2, smoothing=0.5)
    tracker.update([(100, 100, 50, 50), (300, 100, 40, 40)])
    ids = [t.id for t in tracker.tracks]
    tracker.update([(102, 101, 50, 50)])  # first face confirmed (moved a little), second missed once
    assert [t.id for t in tracker.tracks] == [ids[0]]  # an unconfirmed track ends at its first miss
    assert tracker.tracks[0].box != (100, 100, 50, 50)
    tracker.update([])
    tracker.update([])
    assert [t.id for t in tracker.tracks] == [ids[0]]  # confirmed: survives max_missed rounds
    tracker.update([])
    assert tracker.tracks == []
    tracker.update([(100, 100, 50, 50)])
    assert tracker.tracks[0].id not in ids  # a face that comes back starts a new track


def test_smoothing_is_a_moving_average_per_track():
    tracker = FaceTracker(smoothing=0.75)
    tracker.update([(0, 0, 10, 10)])
    track = tracker.tracks[0]
    first = tracker.smooth(track, np.array([1.0, 0.0]))
    np.testing.assert_allclose(first, [1.0, 0.0])
    second = tracker.smooth(track, np.array([0.0, 1.0]))
    np.testing.assert_allclose(second, [0.75, 0.25])
    assert track.frames == 2


# --- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "corrupt_video", "corrupt_image", "empty_folder", "no_glob_match", "camera"])
def test_bad_sources_raise_clear_errors(tmp_path, kind):
    if kind == "missing":
        spec, expected = tmp_path / "nope.mp4", "no such file"
    elif kind == "corrupt_video":
        spec, expected = tmp_path / "garbage.mp4", "not a readable video"
        spec.write_bytes(os.urandom(4096))
    elif kind == "corrupt_image":
        spec, expected = tmp_path / "garbage.jpg", "not a readable image"
        spec.write_bytes(b"\xff\xd8 not really a jpeg")
    elif kind == "empty_folder":
        spec, expected = tmp_path / "empty", "holds no images"
        spec.mkdir()
        (spec / "notes.txt").write_text("no images here")
    elif kind == "no_glob_match":
        spec, expected = tmp_path / "*.png", "no images match"
    else:
        spec, expected = "97", "not available"
    with pytest.raises(EdgeferError, match=expected) as info:
        open_source(str(spec))
    assert str(spec) in str(info.value)


def test_corrupt_image_in_a_folder_is_skipped_and_counted(tmp_path, images_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(images_dir / "single_face.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"broken")
    summary = run_live(str(folder), LiveConfig(model=MODEL))
    assert summary["frames"] == 1 and summary["broken_frames"] == 1 and summary["faces"] == 1


def test_bad_options_raise_clear_errors(tmp_path, video_dir):
    video = str(video_dir / "single_face.mp4")
    with pytest.raises(EdgeferError, match="unknown backend"):
        run_live(video, LiveConfig(model=MODEL, backend="tpu-magic"))
    with pytest.raises(EdgeferError, match="unknown output type"):
        run_live(video, LiveConfig(model=MODEL, out=tmp_path / "out.xyz"))
    with pytest.raises(EdgeferError, match="one frame"):
        run_live(video, LiveConfig(model=MODEL, out=tmp_path / "out.png"))
    with pytest.raises(EdgeferError, match="detect-every"):
        run_live(video, LiveConfig(model=MODEL, detect_every=0))
    with pytest.raises(EdgeferError, match="unknown model"):
        run_live(video, LiveConfig(model="no-such-model"))


def test_video_source_counts_failed_reads_only_when_a_frame_follows():
    class FakeCapture:
        def __init__(self, script):
            self.script = list(script)

        def read(self):
            ok = self.script.pop(0) if self.script else False
            return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)

        def get(self, prop):
            return 0.0

    source = VideoSource.__new__(VideoSource)
    source.broken, source.fps, source.description = 0, 25.0, "fake"
    source._first = np.zeros((4, 4, 3), np.uint8)
    source.capture = FakeCapture([True, False, False, True, True])  # two bad frames, then the end
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 4, 5]
    assert source.broken == 2  # the failures at the end of the stream are not counted


# --- command line -------------------------------------------------------------------------------------

def test_cli_live_prints_summary_line_and_writes_files(tmp_path, video_dir):
    out, jsonl = tmp_path / "a.avi", tmp_path / "a.jsonl"
    result = runner.invoke(app, ["live", str(video_dir / "single_face.mp4"), "--out", str(out), "--jsonl", str(jsonl),
                                 "--max-frames", "20", "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert "20 frames" in result.output and "fps" in result.output and "face found in" in result.output
    assert len(read_video(out)) == 20 and len(read_jsonl(jsonl)) == 20

    result = runner.invoke(app, ["live", str(video_dir / "single_face.mp4"), "--max-frames", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["frames"] == 5 and summary["backend"] == "onnxruntime" and "latency_ms" in summary
    assert format_summary(summary).startswith("5 frames (0 broken)")


def test_cli_errors_exit_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for spec in (tmp_path / "missing.mp4", "98"):
        proc = subprocess.run([sys.executable, "-m", "edgefer.cli", "live", str(spec)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(spec) in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("mode", ["gray", "edges"])
def test_faces_are_prepared_in_the_model_input_mode(images_dir, mode):
    from edgefer.live.backends import make_classifier
    from edgefer.nn.zoo import load_model

    classifier = make_classifier(load_model(MODEL), "torch")
    seen = []
    original = classifier.predict_proba
    classifier.predict_proba = lambda inputs: seen.append(inputs) or original(inputs)
    pipeline = LivePipeline(classifier, mode, LiveConfig(), still_images=True)
    pipeline.process(Frame(0, 0.0, cv2.imread(str(images_dir / "single_face.jpg"))))
    values = np.unique(seen[0])
    if mode == "edges":  # Canny maps: only 0 and 1, mostly 0
        assert set(values.tolist()) <= {0.0, 1.0} and np.mean(seen[0] == 0) > 0.6
    else:
        assert len(values) > 50


def test_camera_source_drops_stale_frames_instead_of_lagging(monkeypatch, video_dir):
    """A camera does not wait for a slow consumer: old frames are dropped and counted, none is lost silently."""
    import edgefer.live.pipeline as pipeline_module
    from edgefer.live.sources import FrameSource

    images = read_video(video_dir / "single_face.mp4")[:40]

    camera_done = threading.Event()

    class FakeCamera(FrameSource):
        kind = "camera"
        fps = 30.0

        def __iter__(self):
            for index, image in enumerate(images):
                yield Frame(index, index / 30.0, image)
            camera_done.set()

    def slow_consumer(frame, faces):
        processed.append(frame.index)
        # The first frame is held until the camera has delivered every frame: the consumer is
        # certainly behind, whatever the machine's speed.
        if frame.index == 0:
            assert camera_done.wait(timeout=60)

    monkeypatch.setattr(pipeline_module, "open_source", lambda spec: FakeCamera("camera 0"))
    processed = []
    summary = run_live("0", LiveConfig(model=MODEL, backend="torch"), on_frame=slow_consumer)
    assert summary["kind"] == "camera"
    assert summary["dropped_frames"] > 0
    assert summary["frames"] + summary["dropped_frames"] == len(images)
    assert processed == sorted(processed) and processed[0] == 0


def test_auto_backend_falls_back_to_torch_with_a_warning(monkeypatch, capsys):
    import edgefer.live.backends as backends
    from edgefer.nn.zoo import load_model

    def unavailable(model, threads=None):
        raise EdgeferError("the onnxruntime backend needs the onnxruntime package")

    monkeypatch.setattr(backends, "OnnxRuntimeClassifier", unavailable)
    classifier = backends.make_classifier(load_model(MODEL), "auto")
    assert classifier.name == "torch"
    assert "classifying with torch instead" in capsys.readouterr().err
    with pytest.raises(EdgeferError, match="needs the onnxruntime package"):
        backends.make_classifier(load_model(MODEL), "onnxruntime")
