"""Deterministic, learnable synthetic images for fast tests.

Each class has a fixed smooth random pattern (a 4x4 grid of random values per channel, upsampled); a
sample is its class pattern plus Gaussian noise, clipped to [0, 1]. The same name always gives the same
tensors, independent of torch's global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SYNTHETIC_TRAIN = 512
SYNTHETIC_TEST = 128
NOISE = 0.15


def load_synthetic(shape: tuple[int, int, int], num_classes: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 [N,C,H,W] images in [0, 1] and int64 labels (balanced, shuffled)."""
    c, h, w = shape
    g = torch.Generator().manual_seed(1_000_003 * c + 10_007 * h + 101 * w + num_classes)
    coarse = torch.rand(num_classes, c, 4, 4, generator=g)
    patterns = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    n = SYNTHETIC_TRAIN if split == "train" else SYNTHETIC_TEST
    g.manual_seed(int(g.initial_seed()) + (1 if split == "train" else 2))
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = patterns[labels] + NOISE * torch.randn(n, c, h, w, generator=g)
    return images.clamp_(0.0, 1.0), labels
