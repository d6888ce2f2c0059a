"""Normalisation and train-time augmentation as plain torch ops (no torchvision).

Augmentation draws from torch's global RNG, so `torch.manual_seed` makes it reproducible (and DataLoader
workers get their usual per-worker seeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from divqat_tvm.errors import DataError

Normalization = tuple[Sequence[float], Sequence[float]] | Mapping[str, Sequence[float]]


def resolve_normalization(
    normalization: Normalization | None, default_mean: Sequence[float], default_std: Sequence[float], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`(mean, std)` per channel from a `(mean, std)` pair or a `{"mean", "std"}` dict (checkpoint meta).

    A single value is broadcast to every channel.

    Raises:
        DataError: wrong number of values or a non-positive std.
    """
    if normalization is None:
        mean, std = default_mean, default_std
    elif isinstance(normalization, Mapping):
        try:
            mean, std = normalization["mean"], normalization["std"]
        except KeyError:
            raise DataError(
                f"Normalisation {dict(normalization)!r} lacks 'mean' or 'std'.",
                "Pass {'mean': [...], 'std': [...]} or a (mean, std) pair.",
            ) from None
    else:
        try:
            mean, std = normalization
        except (TypeError, ValueError):
            raise DataError(
                f"Normalisation {normalization!r} is not a (mean, std) pair.",
                "Pass (mean, std), one value per channel.",
            ) from None
    mean_t = _per_channel(mean, channels, "mean")
    std_t = _per_channel(std, channels, "std")
    if min(std_t) <= 0:
        raise DataError(f"Normalisation std {std_t} has a value <= 0.", "Use positive standard deviations.")
    return mean_t, std_t


def _per_channel(values: Sequence[float] | float, channels: int, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(-1))
    except (TypeError, ValueError):
        raise DataError(
            f"Normalisation {what} {values!r} is not a list of numbers.", f"Give one {what} per channel."
        ) from None
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise DataError(
            f"Normalisation {what} has {len(vals)} values but the images have {channels} channels.",
            f"Give one {what} per channel (or a single value for all).",
        )
    return vals


def random_crop_flip(img: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Zero-pad by `padding`, crop back to the original size at a random offset, maybe flip left-right.

    Works on [C,H,W] or [N,C,H,W] (one draw for the whole batch in the batched case: use per item).
    """
    if padding > 0:
        h, w = img.shape[-2:]
        padded = F.pad(img, (padding, padding, padding, padding))
        dy, dx = (int(v) for v in torch.randint(0, 2 * padding + 1, (2,)))
        img = padded[..., dy : dy + h, dx : dx + w]
    if hflip and bool(torch.rand(()) < 0.5):
        img = img.flip(-1)
    return img
