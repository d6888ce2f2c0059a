"""Datasets: CIFAR-10/100 and SVHN from their on-disk formats, the embedded default, synthetic data.

Public API: `DatasetInfo`, `dataset_info(name)`, `dataset_names()`,
`load_dataset(name, split, data_dir=None, augment=False, normalization=None) -> ImageDataset`.
Every dataset yields (float32 normalised [C,H,W], int label); `ImageDataset.tensors()` gives a whole split.
"""

from __future__ import annotations

import os

from divqat_tvm.data.dataset import ImageDataset
from divqat_tvm.data.info import DatasetInfo, dataset_info, dataset_names, parse_synthetic
from divqat_tvm.data.transforms import Normalization, resolve_normalization
from divqat_tvm.errors import DataError

__all__ = ["DatasetInfo", "ImageDataset", "dataset_info", "dataset_names", "load_dataset"]

SPLITS = ("train", "test")


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    augment: bool = False,
    normalization: Normalization | None = None,
) -> ImageDataset:
    """Load one split of a dataset into memory.

    Args:
        name: a name from `dataset_names()`, or "synthetic:CxHxW:K".
        split: "train" or "test".
        data_dir: root holding the downloaded files (CIFAR, SVHN); default `$DIVQAT_DATA`, else `./data`.
        augment: train-time random crop / flip (per `DatasetInfo`); ignored for "test", which is never
            augmented.
        normalization: (mean, std) or {"mean", "std"} replacing the dataset's own, e.g. the victim's
            normalisation applied to an attacker's surrogate data.

    Returns:
        An `ImageDataset` of (float32 [C,H,W], int) pairs.

    Raises:
        DataError: unknown name or split, missing or malformed files, bad normalisation.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r} for dataset {info.name}.", 'Use "train" or "test".')
    mean, std = resolve_normalization(normalization, info.mean, info.std, info.input_shape[0])
    images, labels = _load_arrays(info.name, split, data_dir)
    return ImageDataset(info, images, labels, mean, std, augment=augment and split == "train", split=split)


def _load_arrays(name: str, split: str, data_dir: str | os.PathLike[str] | None):
    """Raw (images, labels) from the right loader; imports lazily so unused formats cost nothing."""
    syn = parse_synthetic(name)
    if syn is not None:
        from divqat_tvm.data.synthetic import load_synthetic

        return load_synthetic(syn[0], syn[1], split)
    if name == "mnist5k":
        from divqat_tvm.data.embedded import load_mnist5k

        return load_mnist5k(split)
    if name in ("digits", "digits20"):
        from divqat_tvm.data.embedded import load_digits28

        return load_digits28(split, 28 if name == "digits" else 20)
    from divqat_tvm.data.files import resolve_data_dir

    root = resolve_data_dir(data_dir)
    if name in ("cifar10", "cifar100"):
        from divqat_tvm.data.cifar import load_cifar

        return load_cifar(name, split, root)
    if name == "svhn":
        from divqat_tvm.data.svhn import load_svhn

        return load_svhn(split, root)
    raise AssertionError(f"dataset {name} is registered but has no loader")  # pragma: no cover
