"""The data-free attacks' image generator (DFME's GeneratorA, the same shape as MAZE's conv3_gen):
latent → linear → ngf·2 maps at H/4 × W/4 → BN → ×2 upsample, conv, BN, LeakyReLU(0.2) → ×2 upsample,
conv, BN, LeakyReLU(0.2) → conv to C channels → BN without affine (the "pre-activation" image x_pre)
→ tanh. Sized to the victim's input: sizes not divisible by 4 are resized to (H, W) before the last
conv. Both attacks estimate gradients w.r.t. x_pre and query the victim with tanh(x_pre + ε u).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Generator(nn.Module):
    """Args:
    nz: latent size (DFME 256, MAZE 100).
    out_shape: (C, H, W) of the victim's input.
    ngf: base width (official 64; 8×8×128 at the first feature map for 32×32 inputs).
    """

    def __init__(self, nz: int, out_shape: tuple[int, int, int], ngf: int = 64) -> None:
        super().__init__()
        c, h, w = out_shape
        self.nz, self.out_hw = nz, (h, w)
        self.init_hw = (max(1, math.ceil(h / 4)), max(1, math.ceil(w / 4)))
        self.l1 = nn.Linear(nz, ngf * 2 * self.init_hw[0] * self.init_hw[1])
        self.bn0 = nn.BatchNorm2d(ngf * 2)
        self.block1 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 2, 3, 1, 1), nn.BatchNorm2d(ngf * 2), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf, 3, 1, 1), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2))
        self.to_image = nn.Sequential(nn.Conv2d(ngf, c, 3, 1, 1), nn.BatchNorm2d(c, affine=False))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (x = tanh(x_pre), x_pre), both [N, C, H, W]."""
        out = self.l1(z).view(z.shape[0], -1, *self.init_hw)
        out = self.block1(F.interpolate(self.bn0(out), scale_factor=2))
        out = self.block2(F.interpolate(out, scale_factor=2))
        if tuple(out.shape[-2:]) != self.out_hw:
            out = F.interpolate(out, size=self.out_hw)
        x_pre = self.to_image(out)
        return torch.tanh(x_pre), x_pre


def output_map(low: tuple[float, ...], high: tuple[float, ...]):
    """The generator's activation: tanh, then (if bounds are given) an affine map of [−1, 1] onto the
    victim's valid input range per channel, e.g. pixels [0, 1] after the victim's normalisation.

    The official DFME/MAZE code feeds tanh's [−1, 1] straight to the victim. That matches a victim whose
    normalised inputs span about [−1, 1]; an MNIST-normalised victim spans [−0.42, 2.82], so tanh alone
    can only draw dim images. Empty bounds keep the official behaviour.
    """
    if not low and not high:
        return torch.tanh
    if len(low) != len(high):
        raise ValueError(f"pixel bounds need one low and one high per channel, got {len(low)} and {len(high)}.")
    lo = torch.tensor(low, dtype=torch.float32).view(1, -1, 1, 1)
    span = torch.tensor(high, dtype=torch.float32).view(1, -1, 1, 1) - lo

    def act(x_pre: torch.Tensor) -> torch.Tensor:
        return lo + (torch.tanh(x_pre) + 1.0) * 0.5 * span

    return act
