"""Face detectors (BlazeFace decoding, photos at every scale, Haar), the calibrated crop framing,
eye alignment, and how the live pipeline treats a low-scoring new face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgefer.data.faces import (
    BLAZEFACE_MODELS,
    BlazeFaceDetector,
    Face,
    FaceDetector,
    Framing,
    blazeface_anchors,
    crop_face,
    detect_faces,
    weighted_nms,
)
from edgefer.data.framing import fit_framing, framing_of, model_framings, place_on_canvas
from edgefer.errors import EdgeferError


# --- BlazeFace decoding --------------------------------------------------------------------------------

def test_anchor_layouts_match_the_models_outputs():
    short = blazeface_anchors(BLAZEFACE_MODELS["blazeface-short"])
    full = blazeface_anchors(BLAZEFACE_MODELS["blazeface-full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # Stride 8: a 16x16 grid, two anchors per cell, row by row; then 8x8 cells with six anchors each.
    np.testing.assert_allclose(short[0], short[1])
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(short[512 + 6], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])


def test_weighted_nms_merges_overlapping_boxes_by_score():
    corners = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]])
    points = np.zeros((3, 6, 2))
    points[1] += 1.0
    scores = np.array([0.9, 0.6, 0.8])
    merged = list(weighted_nms(corners, points, scores, 0.3))
    assert len(merged) == 2
    box, pts, score = merged[0]
    assert score == pytest.approx(0.9)
    np.testing.assert_allclose(box, [0.04, 0.0, 1.04, 1.0])  # 0.6 / 1.5 of the way to the second box
    np.testing.assert_allclose(pts, np.full((6, 2), 0.4))
    np.testing.assert_allclose(merged[1][0], corners[2])


@pytest.mark.parametrize("detector", ["blazeface", "blazeface-short"])
def test_blazeface_finds_every_face_of_the_shared_photos(images_dir, detector):
    multi = detect_faces(cv2.imread(str(images_dir / "multi_face.jpg")), detector)
    assert len(multi) == 5  # Haar misses the man with sunglasses
    assert all(f.eyes is not None and f.score >= 0.5 for f in multi)
    areas = [f.box[2] * f.box[3] for f in multi]
    assert areas == sorted(areas, reverse=True)
    assert len(detect_faces(cv2.imread(str(images_dir / "single_face.jpg")), detector)) == 1


def test_large_photo_is_searched_in_tiles_for_the_three_quarter_face(images_dir):
    """The shouting soldier in a 2560x1912 photo: found by BlazeFace (tiles merge to one face), not by Haar."""
    image = cv2.imread(str(images_dir / "BWPictureHuman.jpg"))
    faces = detect_faces(image)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 780 < x + w / 2 < 1000 and 400 < y + h / 2 < 620  # his face, left of the image centre, high up
    assert detect_faces(image, "haar") == []


def test_face_on_a_gray_image_and_eye_order(images_dir):
    gray = cv2.imread(str(images_dir / "single_face.jpg"), cv2.IMREAD_GRAYSCALE)
    face = detect_faces(gray)[0]
    (lx, ly), (rx, ry) = face.eyes
    x, y, w, h = face.box
    assert lx < rx and x < lx < x + w and x < rx < x + w and y < ly < y + h / 2 + y * 0 + h / 2


def test_missing_or_corrupt_detector_file_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeferError, match="missing") as missing:
        BlazeFaceDetector("blazeface-full", model_dir=tmp_path)
    assert "blazeface_full_range.tflite" in str(missing.value)
    (tmp_path / "blazeface_full_range.tflite").write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(EdgeferError, match="not a readable face detector model") as corrupt:
        BlazeFaceDetector("blazeface-full", model_dir=tmp_path)
    assert str(tmp_path) in str(corrupt.value)


def test_unknown_detector_is_refused():
    with pytest.raises(EdgeferError, match="unknown face detector"):
        detect_faces(np.zeros((64, 64), np.uint8), "yolo")


# --- crop framing ----------------------------------------------------------------------------------------

class BoxInsideDetector(FaceDetector):
    """A stand-in detector whose box has a known relation to the face image on the canvas: side
    1/1.25 of the image, centre 0.1 box sides above the image centre."""

    name = "stand-in"

    def detect(self, image):
        side = image.shape[0] / (1 + 2 * 0.5)  # place_on_canvas: 50 % margin per side
        box_side = side / 1.25
        centre = image.shape[0] / 2
        cx, cy = centre, centre + 0.1 * box_side
        return [Face((int(round(cx - box_side / 2)), int(round(cy - box_side / 2)), int(round(box_side)),
                      int(round(box_side))), 0.9, None, self.name)]


def test_fit_framing_recovers_a_known_framing(ck_small):
    fit = fit_framing(ck_small.images, BoxInsideDetector(), sample=20)
    assert fit["found_rate"] == 1.0 and fit["images"] == 20
    assert fit["scale"] == pytest.approx(1.25, abs=0.01)
    assert fit["dx"] == pytest.approx(0.0, abs=0.01)
    assert fit["dy"] == pytest.approx(-0.1, abs=0.01)


def test_crop_with_the_fitted_framing_reproduces_the_dataset_crop(ck_small):
    face = ck_small.images[0]
    canvas, offset, side = place_on_canvas(face)
    found = BoxInsideDetector().detect(canvas)[0]
    framing = Framing(*framing_of(found, offset, side))
    crop = crop_face(canvas, found, framing)
    assert np.abs(crop.astype(int) - face.astype(int)).mean() < 4  # the same face, resampling aside
    unframed = crop_face(canvas, found)
    assert np.abs(unframed.astype(int) - face.astype(int)).mean() > 10


def test_framings_are_read_from_a_model_card():
    info = {"framing": {"blazeface-full": {"scale": 1.2, "dx": 0.0, "dy": -0.05, "found_rate": 0.5}}}
    assert model_framings(info) == {"blazeface-full": Framing(1.2, 0.0, -0.05)}
    assert model_framings({}) == {}


def test_every_shipped_model_records_a_framing_for_each_detector_model():
    """live and photos crop with the framing of the model they run: a model shipped without one would be
    fed the detector's raw box, which frames a face unlike its training data."""
    from edgefer.nn.zoo import load_model, shipped_models

    for name in shipped_models():
        assert set(model_framings(load_model(name).info)) == {"blazeface-full", "blazeface-short", "haar"}, name


def test_crop_outside_the_image_replicates_the_border():
    gray = np.tile(np.arange(100, dtype=np.uint8), (100, 1))
    crop = crop_face(gray, (80, 40, 40, 40))  # reaches 20 px past the right edge
    assert crop.shape == (48, 48)
    assert crop[:, -10:].min() >= 98  # the last column, replicated


def test_alignment_levels_a_tilted_eye_line(images_dir):
    gray = cv2.imread(str(images_dir / "single_face.jpg"), cv2.IMREAD_GRAYSCALE)
    upright = detect_faces(gray)[0]
    height, width = gray.shape
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0)
    tilted_image = cv2.warpAffine(gray, rotation, (width, height), borderMode=cv2.BORDER_REPLICATE)
    tilted = detect_faces(tilted_image)[0]
    assert abs(tilted.eye_angle - upright.eye_angle) == pytest.approx(20, abs=6)
    reference = crop_face(gray, upright, align=True).astype(float)

    def correlation(crop):
        return np.corrcoef(crop.astype(float).ravel(), reference.ravel())[0, 1]

    assert correlation(crop_face(tilted_image, tilted, align=True)) > correlation(crop_face(tilted_image, tilted)) + 0.05


# --- the live pipeline and low-scoring faces ----------------------------------------------------------

class ScriptedDetector(FaceDetector):
    name = "scripted"

    def __init__(self, score):
        self.score, self.calls = score, 0

    def detect(self, image):
        self.calls += 1
        return [Face((40, 40, 60, 60), self.score, None, "blazeface-full")]


@pytest.mark.parametrize("score, reported", [(0.6, False), (0.9, True)])
def test_a_low_scoring_new_face_is_not_reported_in_video_but_is_in_photos(tiny_checkpoint, score, reported):
    from edgefer.live.backends import make_classifier
    from edgefer.live.pipeline import LiveConfig, LivePipeline
    from edgefer.live.sources import Frame
    from edgefer.nn.model import FerModel

    classifier = make_classifier(FerModel.load(tiny_checkpoint), "torch")
    frame = Frame(0, 0.0, np.full((160, 160, 3), 120, np.uint8))
    video = LivePipeline(classifier, "gray", LiveConfig(detect_every=8))
    video.detector = ScriptedDetector(score)
    results = [video.process(frame) for _ in range(6)]
    assert all(bool(r) == reported for r in results)
    # A tentative face is searched for again on the next frames (3 rounds in all), then on schedule.
    assert video.detector.calls == (3 if not reported else 1)
    photo = LivePipeline(classifier, "gray", LiveConfig(), still_images=True)
    photo.detector = ScriptedDetector(score)
    assert len(photo.process(frame)) == 1


def test_face_appearing_and_leaving_a_video(video_dir):
    """face_noface.mov: a face in frames 0-71, then none (a logo scores 0.5-0.66 for a few frames)."""
    from edgefer.live.pipeline import LiveConfig, run_live

    with_face = []
    summary = run_live(str(video_dir / "face_noface.mov"), LiveConfig(model="ckplus-cnn"),
                       on_frame=lambda frame, faces: with_face.append(bool(faces)))
    assert summary["frames"] == len(with_face) == 169
    assert all(with_face[:72])
    assert not any(with_face[75:])  # searched every frame once missed: dropped after max_missed frames


def test_framing_command_records_the_fit_in_checkpoint_and_card(tiny_trained, tmp_path):
    """``edgefer framing`` fits each detector model on the model's own training images (rebuilt from
    its card) and writes the fit into the checkpoint header and the card beside it."""
    import json

    from typer.testing import CliRunner

    from edgefer.cli import app
    from edgefer.data.framing import model_framings
    from edgefer.nn.model import FerModel

    tiny_trained.info = {**tiny_trained.info, "data": {"dataset": "ckplus"},
                         "split": {"protocol": "study", "seed": 123, "test_fraction": 0.15, "val_fraction": 0.10}}
    source = tiny_trained.save(tmp_path / "tiny.safetensors")
    (tmp_path / "tiny.json").write_text(json.dumps({**tiny_trained.info, "lineage": ["kept"]}))
    out = tmp_path / "framed.safetensors"
    result = CliRunner().invoke(app, ["framing", "--model", str(source), "--out", str(out), "--sample", "12", "--json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    assert set(fitted) == {"blazeface-full", "blazeface-short", "haar"}
    assert all(f["images"] == 12 and 1.0 < f["scale"] < 1.4 for f in fitted.values())
    framed = FerModel.load(out)
    assert set(model_framings(framed.info)) == set(fitted) and framed.digest() == FerModel.load(source).digest()
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["lineage"] == ["kept"] and card["framing"] == fitted and "framing_command" in card


def test_margin_widens_the_crop_with_or_without_a_fitted_framing(tiny_checkpoint):
    from edgefer.live.backends import make_classifier
    from edgefer.live.pipeline import LiveConfig, LivePipeline
    from edgefer.nn.model import FerModel

    model = FerModel.load(tiny_checkpoint)
    model.info = {**model.info, "framing": {"blazeface-full": {"scale": 1.2, "dx": 0.0, "dy": -0.05}}}
    pipeline = LivePipeline(make_classifier(model, "torch"), "gray", LiveConfig(margin=0.25))
    assert pipeline.framings["blazeface-full"] == Framing(1.2 * 1.5, 0.0, -0.05)
    assert pipeline.framings["haar"] == Framing(1.5, 0.0, 0.0)  # no fit: the box as is, widened
