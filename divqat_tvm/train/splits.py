"""Disjoint victim / attacker partitions of a dataset's training split, for in-distribution attacks.

`NAME@victim` and `NAME@attacker` (e.g. `mnist5k@victim`) name the two halves of NAME's training split, drawn
by a fixed, seeded, class-stratified split: the victim's teacher and students train only on `@victim`, and
KnockoffNets' attacker draws its queries only from `@attacker`. Both share NAME's test split, which neither
trains on (the victim's accuracy and the stolen model's fidelity are measured there). So the attacker samples
the victim's task distribution (other MNIST writers' digits) without ever querying an image the victim
trained on or is tested with. For mnist5k: 2,000 victim / 2,000 attacker / 1,000 test images.

A plain name (no `@`) is the whole dataset, exactly as `divqat_tvm.data.load_dataset` loads it.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from divqat_tvm.data import ImageDataset, dataset_info, load_dataset
from divqat_tvm.data.info import DatasetInfo
from divqat_tvm.data.split import stratified_split
from divqat_tvm.errors import DataError

PARTS = ("victim", "attacker")
#: seed of the victim/attacker split (fixed: changing it changes every partitioned result)
PARTITION_SEED = 1


def split_name(name: str) -> tuple[str, str | None]:
    """("mnist5k", "victim") for "mnist5k@victim"; (name, None) without a part.

    Raises:
        DataError: an unknown part.
    """
    base, sep, part = name.partition("@")
    if not sep:
        return name, None
    if part not in PARTS:
        raise DataError(
            f"Unknown partition {part!r} in the dataset name {name!r}.",
            f"Use {base}@victim (the victim's half of the training split) or {base}@attacker (the attacker's half).",
        )
    return base, part


def base_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of the dataset a (possibly partitioned) name refers to."""
    return dataset_info(split_name(name)[0])


@lru_cache(maxsize=8)
def partition_indices(base: str, n_train: int, labels_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(victim, attacker) indices into the base training split: a stratified half each."""
    labels = np.frombuffer(labels_bytes, dtype=np.int64)
    victim, attacker = stratified_split(labels, n_train // 2, PARTITION_SEED)
    return victim, attacker


def load_split(
    name: str, split: str, data_dir: str | os.PathLike[str] | None = None, augment: bool = False, normalization=None
) -> ImageDataset:
    """Like `load_dataset`, also for `NAME@victim` / `NAME@attacker` (their train split is that half; their test
    split is NAME's)."""
    base, part = split_name(name)
    ds = load_dataset(base, split, data_dir=data_dir, augment=augment, normalization=normalization)
    if part is None or split != "train":
        return ds
    labels = ds.labels.numpy().astype(np.int64)
    victim, attacker = partition_indices(ds.info.name, len(labels), labels.tobytes())
    idx = victim if part == "victim" else attacker
    import torch

    t = torch.from_numpy(idx)
    return ImageDataset(ds.info, ds.images[t], ds.labels[t], ds.mean, ds.std, augment=augment, split="train")
