"""Seeded splits: the study's stratified random protocol and a leakage-free grouped protocol.

CK+48 holds about three frames of each posed sequence and no subject ids. A random image-level
split puts near-identical frames of one sequence on both sides, which is how ~99 % is usually
reported. ``near_duplicate_groups`` links every pair of images whose pixel correlation (Pearson,
over the 48x48 pixels) reaches ``threshold``, whatever their position or class, and returns the
connected components as groups. In ck_plus_48.npz the frames of a sequence are not stored next to
each other, so all pairs are compared, not only neighbours. At the default 0.95 the 981 CK+48
images form 316 groups, 278 of them of exactly three images (one sequence each); larger groups join
sequences of one subject. The grouped splits never put one group on both sides.
"""

from __future__ import annotations

import numpy as np

from edgefer.errors import EdgeferError

DUPLICATE_CORRELATION = 0.95


def near_duplicate_groups(images: np.ndarray, threshold: float = DUPLICATE_CORRELATION, block: int = 2048) -> np.ndarray:
    """Group ids (0..G-1, in order of first appearance) linking images with correlation >= threshold."""
    n = len(images)
    flat = images.reshape(n, -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    flat /= np.where(norms == 0, 1.0, norms)  # a flat image correlates with nothing
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        corr = flat[start : start + block] @ flat.T
        rows, cols = np.nonzero(corr >= threshold)
        for i, j in zip(rows + start, cols):
            if i < j:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(n)])
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber groups by first appearance
    return order[inverse]


def _check(labels: np.ndarray, k: int) -> None:
    if k < 2:
        raise EdgeferError(f"need at least 2 folds, got {k}")
    if len(labels) < k:
        raise EdgeferError(f"{len(labels)} images cannot fill {k} folds")


def stratified_kfold(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k test folds (sorted index arrays); each class dealt evenly over the folds after a seeded shuffle."""
    _check(labels, k)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        for position, index in enumerate(members):
            folds[(position + offset) % k].append(int(index))
        offset += len(members)  # start the next class where this one stopped: equal fold sizes
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def grouped_stratified_kfold(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k test folds that never split a group, with class counts balanced greedily.

    Groups are placed largest first (seeded order among equals) into the fold whose count of the
    group's majority class is lowest relative to its target, ties to the smallest fold.
    """
    _check(labels, k)
    n_classes = int(labels.max()) + 1
    group_ids = np.unique(groups)
    if len(group_ids) < k:
        raise EdgeferError(f"{len(group_ids)} groups cannot fill {k} folds")
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(group_ids), n_classes), dtype=np.int64)
    np.add.at(counts, (np.searchsorted(group_ids, groups), labels), 1)
    order = sorted(rng.permutation(len(group_ids)), key=lambda g: -counts[g].sum())
    fold_counts = np.zeros((k, n_classes), dtype=np.int64)
    assignment = np.empty(len(group_ids), dtype=np.int64)
    for g in order:
        majority = counts[g].argmax()
        load = fold_counts[:, majority] + fold_counts.sum(axis=1) / max(len(labels), 1)
        fold = int(np.argmin(load))
        assignment[g] = fold
        fold_counts[fold] += counts[g]
    fold_of_image = assignment[np.searchsorted(group_ids, groups)]
    return [np.flatnonzero(fold_of_image == f) for f in range(k)]


def holdout_split(
    labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held-out) index arrays with about ``fraction`` held out, stratified, groups kept whole."""
    if not 0 < fraction < 1:
        raise EdgeferError(f"held-out fraction must be in (0, 1), got {fraction}")
    k = max(2, int(round(1 / fraction)))
    folds = (
        stratified_kfold(labels, k, seed)
        if groups is None
        else grouped_stratified_kfold(labels, groups, k, seed)
    )
    held = folds[0]
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


def cv_folds(
    labels: np.ndarray, k: int, seed: int, protocol: str, images: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Test folds for a protocol: ``study`` (image-level) or ``leakage-free`` (near-duplicate groups)."""
    if protocol == "study":
        return stratified_kfold(labels, k, seed), None
    if protocol == "leakage-free":
        if images is None:
            raise EdgeferError("the leakage-free protocol needs the images to group near-duplicates")
        groups = near_duplicate_groups(images)
        return grouped_stratified_kfold(labels, groups, k, seed), groups
    raise EdgeferError(f"unknown protocol {protocol!r}; choose study or leakage-free")


def evenly_spaced(count: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``count`` items, evenly spaced over their order: the deterministic
    subset edgefer takes wherever it needs a few representative images."""
    return np.linspace(0, count - 1, min(limit, count)).round().astype(int)
