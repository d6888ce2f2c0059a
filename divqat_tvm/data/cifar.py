"""CIFAR-10 / CIFAR-100 from the standard python-pickle batches (https://www.cs.toronto.edu/~kriz/cifar.html).

Each batch is a pickled dict with b"data" (uint8 [N, 3072], channel-major 32x32 planes) and b"labels"
(CIFAR-10) or b"fine_labels" (CIFAR-100).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from divqat_tvm.data.files import find_folder, malformed_error, missing_error

CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"

_LAYOUT = {
    # name: (folder, train files, test files, label key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


def cifar_files(name: str, split: str) -> tuple[str, list[str]]:
    """(folder, file names) a CIFAR split is read from."""
    folder, train, test, _, _ = _LAYOUT[name]
    return folder, train if split == "train" else test


def load_cifar(name: str, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,3,32,32] images and int64 labels of one CIFAR split.

    Raises:
        DataError: a file is missing or malformed.
    """
    folder, train, test, label_key, classes = _LAYOUT[name]
    files = train if split == "train" else test
    where = find_folder(root, folder, files)
    if where is None:
        raise missing_error(name, root, folder, files, CIFAR_SOURCE)
    xs, ys = [], []
    for f in files:
        x, y = _read_batch(where / f, name, label_key, classes)
        xs.append(x)
        ys.append(y)
    images = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(np.concatenate(ys))


def _read_batch(path: Path, name: str, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as e:  # unpickling garbage raises many types
        raise malformed_error(name, path, f"not a python pickle ({type(e).__name__}: {e})", CIFAR_SOURCE) from e
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise malformed_error(name, path, f"expected a dict with b'data' and {label_key!r}, got {keys}", CIFAR_SOURCE)
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise malformed_error(
            name, path, f"b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]", CIFAR_SOURCE
        )
    if len(labels) != len(data):
        raise malformed_error(name, path, f"{len(data)} images but {len(labels)} labels", CIFAR_SOURCE)
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise malformed_error(name, path, f"labels outside 0..{classes - 1}", CIFAR_SOURCE)
    return data, labels
