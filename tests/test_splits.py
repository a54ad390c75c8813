"""Seeded splits: stratified k-fold, near-duplicate groups, grouped k-fold, hold-out."""

import numpy as np
import pytest

from edgefer.data.splits import (
    cv_folds,
    grouped_stratified_kfold,
    holdout_split,
    near_duplicate_groups,
    stratified_kfold,
)
from edgefer.errors import EdgeferError


def assert_partition(folds, n):
    everything = np.concatenate(folds)
    assert len(everything) == n, "folds overlap or miss indices"
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    for i in range(len(folds)):
        for j in range(i + 1, len(folds)):
            assert not np.intersect1d(folds[i], folds[j]).size


def test_stratified_kfold_partitions_and_balances(ck_full):
    labels = ck_full.labels
    folds = stratified_kfold(labels, 5, seed=123)
    assert len(folds) == 5
    assert_partition(folds, len(labels))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    per_class = np.array([np.bincount(labels[f], minlength=7) for f in folds])  # folds x classes
    assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()
    for f in folds:
        assert (np.diff(f) > 0).all()  # sorted index arrays


def test_stratified_kfold_is_seeded():
    labels = np.repeat(np.arange(4), 13)
    a, b = stratified_kfold(labels, 4, 7), stratified_kfold(labels, 4, 7)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
    c = stratified_kfold(labels, 4, 8)
    assert any(not np.array_equal(fa, fc) for fa, fc in zip(a, c))


def test_kfold_argument_checks():
    with pytest.raises(EdgeferError, match="2 folds"):
        stratified_kfold(np.zeros(10, np.int64), 1, 0)
    with pytest.raises(EdgeferError, match="cannot fill"):
        stratified_kfold(np.zeros(3, np.int64), 5, 0)
    with pytest.raises(EdgeferError, match="groups cannot fill"):
        grouped_stratified_kfold(np.zeros(10, np.int64), np.zeros(10, np.int64), 3, 0)


def test_near_duplicate_groups_synthetic():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (6, 48, 48)).astype(np.uint8)  # unrelated images
    noisy = np.clip(base[2].astype(int) + rng.integers(-4, 5, (48, 48)), 0, 255).astype(np.uint8)
    flat = np.full((48, 48), 100, np.uint8)
    images = np.stack([base[0], base[1], base[2], base[3], noisy, base[2], base[4], base[5], flat, flat])
    groups = near_duplicate_groups(images)
    assert groups.shape == (10,)
    assert groups[2] == groups[4] == groups[5]  # an image, its noisy copy and its exact copy
    others = [0, 1, 3, 6, 7]
    assert len({groups[i] for i in others} | {groups[2]}) == 6  # unrelated images stay apart
    assert groups[8] != groups[9]  # a flat image correlates with nothing, not even itself
    # ids 0..G-1 numbered by first appearance
    first = [groups[i] for i in sorted({int(np.flatnonzero(groups == g)[0]) for g in set(groups.tolist())})]
    assert first == list(range(groups.max() + 1))


def test_near_duplicate_groups_threshold_and_block_size():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (48, 48)).astype(np.float64)
    b = rng.integers(0, 256, (48, 48)).astype(np.float64)
    mixed = np.clip(0.6 * a + 0.4 * b, 0, 255).astype(np.uint8)  # correlation with a: about 0.83
    images = np.stack([a.astype(np.uint8), mixed])
    assert near_duplicate_groups(images)[0] != near_duplicate_groups(images)[1]
    low = near_duplicate_groups(images, threshold=0.7)
    assert low[0] == low[1]
    many = np.concatenate([images, images, rng.integers(0, 256, (5, 48, 48)).astype(np.uint8)])
    np.testing.assert_array_equal(near_duplicate_groups(many, block=3), near_duplicate_groups(many))


@pytest.fixture(scope="module")
def ck_groups(ck_full):
    return near_duplicate_groups(ck_full.images)


def test_ckplus_has_316_near_duplicate_groups(ck_groups):
    assert ck_groups.max() + 1 == 316
    assert len(np.unique(ck_groups)) == 316
    sizes = np.bincount(ck_groups)
    assert (sizes == 3).sum() == 278


def test_grouped_kfold_never_splits_a_group(ck_full, ck_groups):
    labels = ck_full.labels
    folds = grouped_stratified_kfold(labels, ck_groups, 5, seed=123)
    assert len(folds) == 5
    assert_partition(folds, len(labels))
    fold_of = np.empty(len(labels), np.int64)
    for i, f in enumerate(folds):
        fold_of[f] = i
    for g in np.unique(ck_groups):
        assert len(np.unique(fold_of[ck_groups == g])) == 1, f"group {g} straddles folds"
    sizes = np.array([len(f) for f in folds])
    assert sizes.min() > 0.7 * len(labels) / 5  # roughly balanced
    for f in folds:  # every class appears in every fold
        assert len(np.unique(labels[f])) == 7
    again = grouped_stratified_kfold(labels, ck_groups, 5, seed=123)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))


def test_cv_folds_protocols(ck_full, ck_groups):
    folds, groups = cv_folds(ck_full.labels, 5, 123, "study")
    assert groups is None
    assert all(np.array_equal(a, b) for a, b in zip(folds, stratified_kfold(ck_full.labels, 5, 123)))
    folds, groups = cv_folds(ck_full.labels, 5, 123, "leakage-free", ck_full.images)
    np.testing.assert_array_equal(groups, ck_groups)
    with pytest.raises(EdgeferError, match="images"):
        cv_folds(ck_full.labels, 5, 123, "leakage-free")
    with pytest.raises(EdgeferError, match="protocol"):
        cv_folds(ck_full.labels, 5, 123, "random")


def test_holdout_split_stratified(ck_full):
    keep, held = holdout_split(ck_full.labels, 0.2, seed=3)
    assert_partition([keep, held], len(ck_full))
    assert abs(len(held) - 0.2 * len(ck_full)) <= 7
    for c in range(7):  # each class held out in proportion (within one image)
        n_c = (ck_full.labels == c).sum()
        assert abs((ck_full.labels[held] == c).sum() - n_c / 5) <= 1


def test_holdout_split_keeps_groups_whole(ck_full, ck_groups):
    keep, held = holdout_split(ck_full.labels, 0.15, seed=123, groups=ck_groups)
    assert_partition([keep, held], len(ck_full))
    assert not np.intersect1d(ck_groups[keep], ck_groups[held]).size
    assert 0.08 * len(ck_full) < len(held) < 0.25 * len(ck_full)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_split_rejects_bad_fraction(fraction):
    with pytest.raises(EdgeferError, match="fraction"):
        holdout_split(np.repeat(np.arange(3), 10), fraction, 0)
