"""The one in-memory Dataset type every loader returns.

Images are kept unnormalised (uint8 0..255 or float in [0, 1]) so augmentation pads with black as usual,
and normalised per item; `tensors()` gives the whole split normalised at once for fast evaluation.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from divqat_tvm.data.info import DatasetInfo
from divqat_tvm.data.transforms import random_crop_flip


class ImageDataset(Dataset):
    """(float32 normalised [C,H,W] image, int label) pairs held in memory.

    Args:
        info: the dataset's static facts.
        images: [N,C,H,W] uint8 (0..255) or float32 (0..1).
        labels: [N] integer labels in 0..num_classes-1.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        augment: apply `info`'s random crop / flip on each access.
        split: "train" or "test" (informational).
    """

    def __init__(
        self,
        info: DatasetInfo,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool = False,
        split: str = "train",
    ) -> None:
        self.info = info
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean = mean
        self.std = std
        self.augment = augment and (info.crop_padding > 0 or info.hflip)
        self.split = split
        self._scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._inv_std = 1.0 / torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index].to(torch.float32) * self._scale
        if self.augment:
            img = random_crop_flip(img, self.info.crop_padding, self.info.hflip)
        return (img - self._mean) * self._inv_std, int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as (float32 [N,C,H,W] normalised, int64 [N]), without augmentation."""
        x = self.images.to(torch.float32) * self._scale
        return (x - self._mean) * self._inv_std, self.labels

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name}, {self.split}, n={len(self)}, augment={self.augment})"
