"""Model inputs: gray in [0, 1], the study's Canny edge maps, and their sparsity."""

import cv2
import numpy as np
import pytest

from edgefer.data.preprocess import INPUT_MODES, edge_map, input_sparsity, prepare_input
from edgefer.errors import EdgeferError


def study_edges(face: np.ndarray) -> np.ndarray:
    """The first author's recipe, written out with cv2 directly."""
    blurred = cv2.convertScaleAbs(cv2.GaussianBlur(face, (3, 3), 0))
    return cv2.Canny(blurred, 50, 150)


def test_gray_input(ck_small):
    x = prepare_input(ck_small.images, "gray")
    assert x.shape == (len(ck_small), 1, 48, 48)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[:, 0] * 255.0, ck_small.images, atol=1e-3)


def test_edge_input_is_binary_and_sparse(ck_small):
    gray = prepare_input(ck_small.images, "gray")
    edges = prepare_input(ck_small.images, "edges")
    assert edges.shape == (len(ck_small), 1, 48, 48) and edges.dtype == np.float32
    assert set(np.unique(edges).tolist()) <= {0.0, 1.0}
    assert edges.max() == 1.0  # faces do have edges
    assert input_sparsity(edges) > 0.5 > input_sparsity(gray)


def test_edge_map_matches_direct_cv2_recipe(ck_small):
    for face in ck_small.images[:20]:
        np.testing.assert_array_equal(edge_map(face), study_edges(face))
    edges = prepare_input(ck_small.images[:20], "edges")
    expected = np.stack([study_edges(f) for f in ck_small.images[:20]]).astype(np.float32) / 255.0
    np.testing.assert_array_equal(edges[:, 0], expected)


def test_edges_x2_recipe(ck_small):
    face = ck_small.images[0]
    up = cv2.resize(face, (96, 96), interpolation=cv2.INTER_LINEAR)
    expected = cv2.resize(study_edges(up), (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(edge_map(face, upsample=True), expected)
    x = prepare_input(ck_small.images[:5], "edges-x2")
    assert x.shape == (5, 1, 48, 48) and x.min() >= 0 and x.max() <= 1


def test_edge_map_resizes_larger_faces():
    rng = np.random.default_rng(0)
    big = cv2.resize(rng.integers(0, 256, (24, 24), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST)
    out = edge_map(big)
    assert out.shape == (48, 48) and out.dtype == np.uint8


def test_input_sparsity_counts_exact_zeros():
    assert input_sparsity(np.array([0.0, 0.0, 0.5, 1.0])) == 0.5
    assert input_sparsity(np.zeros((2, 1, 4, 4))) == 1.0
    assert input_sparsity(np.full(3, 1e-6)) == 0.0


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_prepare_input_empty_batch(mode):
    assert prepare_input(np.zeros((0, 48, 48), np.uint8), mode).shape == (0, 1, 48, 48)


def test_prepare_input_rejects_bad_mode_and_shape(ck_small):
    with pytest.raises(EdgeferError, match="rgb"):
        prepare_input(ck_small.images, "rgb")
    with pytest.raises(EdgeferError, match="32"):
        prepare_input(np.zeros((2, 32, 32), np.uint8), "gray")
