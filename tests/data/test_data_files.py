"""CIFAR-10/100 and SVHN: tiny files written in the real on-disk formats, read through the real loaders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from divqat_tvm.data import dataset_info, load_dataset
from divqat_tvm.errors import DataError

torch.set_num_threads(1)


def _write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes) -> None:
    """A batch as the CIFAR site ships it: a pickled dict with bytes keys and a uint8 [N, 3072] array."""
    batch = {b"batch_label": b"testing batch", label_key: labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [lab // 5 for lab in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def _make_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        _write_cifar_batch(folder / f"data_batch_{i}", x, y, b"labels")
        xs.append(x)
        ys += y
    out["train"] = (np.concatenate(xs), np.array(ys))
    x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    y = [9, 0, 3, 7]
    _write_cifar_batch(folder / "test_batch", x, y, b"labels")
    out["test"] = (x, np.array(y))
    return out


def _reference(row: np.ndarray, mean, std) -> np.ndarray:
    """Independent decode of one CIFAR row: pixel (c, h, w) is row[c*1024 + h*32 + w]."""
    img = np.empty((3, 32, 32), dtype=np.float64)
    for c in range(3):
        for h in range(32):
            img[c, h, :] = row[c * 1024 + h * 32 : c * 1024 + h * 32 + 32]
    return (img / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]


def test_cifar10_pixels_labels_and_normalisation(tmp_path: Path) -> None:
    raw = _make_cifar10(tmp_path)
    info = dataset_info("cifar10")
    for split, (x, y) in raw.items():
        ds = load_dataset("cifar10", split, data_dir=tmp_path)
        assert len(ds) == len(y)
        for i in (0, len(y) - 1):
            img, label = ds[i]
            assert img.dtype == torch.float32 and img.shape == (3, 32, 32)
            assert label == y[i]
            np.testing.assert_allclose(img.numpy(), _reference(x[i], info.mean, info.std), atol=1e-5)
        xt, yt = ds.tensors()
        assert xt.shape == (len(y), 3, 32, 32) and yt.tolist() == y.tolist()


def test_cifar_normalisation_override_and_dir_pointing_into_folder(tmp_path: Path) -> None:
    raw = _make_cifar10(tmp_path)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py", normalization=([0.5], [0.5]))
    np.testing.assert_allclose(ds[1][0].numpy(), _reference(raw["test"][0][1], [0.5] * 3, [0.5] * 3), atol=1e-5)
    ds2 = load_dataset("cifar10", "test", data_dir=tmp_path, normalization={"mean": [0, 0, 0], "std": [1, 1, 1]})
    assert float(ds2.tensors()[0].min()) >= 0 and float(ds2.tensors()[0].max()) <= 1


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_cifar10(tmp_path)
    monkeypatch.setenv("DIVQAT_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", "test")) == 4


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    xtr = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    _write_cifar_batch(folder / "train", xtr, [0, 99, 42, 5, 17, 63], b"fine_labels")
    _write_cifar_batch(folder / "test", xtr[:2], [98, 1], b"fine_labels")
    tr = load_dataset("cifar100", "train", data_dir=tmp_path)
    te = load_dataset("cifar100", "test", data_dir=tmp_path)
    assert tr.tensors()[1].tolist() == [0, 99, 42, 5, 17, 63] and te.tensors()[1].tolist() == [98, 1]
    assert tr.info.num_classes == 100
    np.testing.assert_allclose(tr[2][0].numpy(), _reference(xtr[2], tr.mean, tr.std), atol=1e-5)


def _unnormalise(img: torch.Tensor, ds) -> torch.Tensor:
    return img * torch.tensor(ds.std).view(-1, 1, 1) + torch.tensor(ds.mean).view(-1, 1, 1)


def _is_crop_flip_of(aug: torch.Tensor, orig: torch.Tensor, pad: int) -> bool:
    """True if `aug` is some zero-padded crop (optionally mirrored) of `orig`."""
    padded = torch.nn.functional.pad(orig, (pad,) * 4)
    h, w = orig.shape[-2:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            if torch.allclose(crop, aug, atol=1e-5) or torch.allclose(crop.flip(-1), aug, atol=1e-5):
                return True
    return False


def test_augmentation_changes_train_not_test_and_is_seeded(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    plain = load_dataset("cifar10", "train", data_dir=tmp_path)
    aug = load_dataset("cifar10", "train", data_dir=tmp_path, augment=True)
    torch.manual_seed(0)
    first = [aug[i][0] for i in range(len(aug))]
    torch.manual_seed(0)
    again = [aug[i][0] for i in range(len(aug))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, plain[i][0]) for i, a in enumerate(first))
    for i, a in enumerate(first):
        assert _is_crop_flip_of(_unnormalise(a, aug), _unnormalise(plain[i][0], plain), 4)
    test_plain = load_dataset("cifar10", "test", data_dir=tmp_path)
    test_aug = load_dataset("cifar10", "test", data_dir=tmp_path, augment=True)
    assert all(torch.equal(test_aug[i][0], test_plain[i][0]) for i in range(len(test_plain)))


def _write_svhn(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y.reshape(-1, 1)})


def test_svhn_mat_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([10, 1, 5, 10, 9], dtype=np.uint8)
    _write_svhn(tmp_path / "svhn" / "train_32x32.mat", x, y)
    _write_svhn(tmp_path / "test_32x32.mat", x[..., :2], y[:2])  # also found directly in the data dir
    tr = load_dataset("svhn", "train", data_dir=tmp_path)
    te = load_dataset("svhn", "test", data_dir=tmp_path)
    assert tr.tensors()[1].tolist() == [0, 1, 5, 0, 9] and len(te) == 2
    img, _ = tr[3]
    mean, std = np.array(tr.mean)[:, None, None], np.array(tr.std)[:, None, None]
    expect = (x[:, :, :, 3].transpose(2, 0, 1) / 255.0 - mean) / std
    np.testing.assert_allclose(img.numpy(), expect, atol=1e-5)
    torch.manual_seed(3)
    aug = load_dataset("svhn", "train", data_dir=tmp_path, augment=True)
    assert not aug.info.hflip  # digits must not be mirrored
    assert _is_crop_flip_of(_unnormalise(aug[0][0], aug), _unnormalise(tr[0][0], tr), 4)


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        (
            "cifar10",
            "train",
            ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_5", "cs.toronto.edu"],
        ),
        ("cifar10", "test", ["cifar-10-batches-py/test_batch", "cs.toronto.edu"]),
        ("cifar100", "train", ["cifar-100-python/train", "cs.toronto.edu"]),
        ("svhn", "test", ["test_32x32.mat", "ufldl.stanford.edu/housenumbers"]),
    ],
)
def test_missing_files_name_files_directory_and_source(
    tmp_path: Path, name: str, split: str, expected: list[str]
) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(name, split, data_dir=tmp_path / "empty")
    msg = str(e.value)
    for s in [*expected, str((tmp_path / "empty").resolve())]:
        assert s in msg
    assert e.value.fix and "never downloads" in e.value.fix


def test_partially_missing_cifar_names_the_files(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", "train", data_dir=tmp_path)


def test_malformed_files(tmp_path: Path) -> None:
    _make_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="data_batch_2.*malformed"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    _write_cifar_batch(bad, np.zeros((3, 100), dtype=np.uint8), [0, 1, 2], b"labels")
    with pytest.raises(DataError, match=r"uint8 \[N, 3072\]"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    _write_cifar_batch(bad, np.zeros((3, 3072), dtype=np.uint8), [0, 1, 10], b"labels")
    with pytest.raises(DataError, match="labels outside"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    # a CIFAR-10 batch where CIFAR-100 is expected has no fine labels
    _write_cifar_batch(tmp_path / "cifar-100-python" / "test", np.zeros((1, 3072), dtype=np.uint8), [0], b"labels")
    with pytest.raises(DataError, match="fine_labels"):
        load_dataset("cifar100", "test", data_dir=tmp_path)
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(DataError, match="test_32x32.mat.*malformed"):
        load_dataset("svhn", "test", data_dir=tmp_path)
    _write_svhn(tmp_path / "svhn" / "test_32x32.mat", np.zeros((28, 28, 1, 2), dtype=np.uint8), np.array([1, 2]))
    with pytest.raises(DataError, match="expected uint8"):
        load_dataset("svhn", "test", data_dir=tmp_path)
