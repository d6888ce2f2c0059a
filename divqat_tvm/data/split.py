"""Fixed, seeded, stratified train/test splits (numpy's legacy RandomState: a stream that never changes)."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(train, test)`: `n_test` test items spread over classes in proportion to their sizes.

    Per-class test counts use largest remainders (ties to the smaller class id), so the total is exact.
    Both index arrays are sorted, so the order of the source data is kept.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n_test / len(labels))
    take = np.floor(exact).astype(int)
    short = n_test - int(take.sum())
    order = np.argsort(-(exact - take), kind="stable")
    take[order[:short]] += 1
    rng = np.random.RandomState(seed)
    test = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        test.append(idx[rng.permutation(len(idx))[:k]])
    test_idx = np.sort(np.concatenate(test))
    mask = np.ones(len(labels), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx
