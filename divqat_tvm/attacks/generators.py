"""The data-free attacks' image generator (DFME's GeneratorA, the same shape as MAZE's conv3_gen):
latent → linear → ngf·2 maps at H/4 × W/4 → BN → ×2 upsample, conv, BN, LeakyReLU(0.2) → ×2 upsample,
conv, BN, LeakyReLU(0.2) → conv to C channels → BN (the "pre-activation" image x_pre; without affine in
DFME, with affine in MAZE) → output map (tanh in both official codes). Sized to the victim's input: sizes
not divisible by 4 are resized to (H, W) before the last conv. Both attacks estimate gradients w.r.t.
x_pre and query the victim with output_map(x_pre + ε u).
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
    final_affine: a learnable scale and shift in the last BatchNorm (MAZE's conv3_gen: True; DFME: False).
    """

    def __init__(self, nz: int, out_shape: tuple[int, int, int], ngf: int = 64, final_affine: bool = False) -> None:
        super().__init__()
        c, h, w = out_shape
        self.nz, self.out_hw = nz, (h, w)
        self.init_hw = (max(1, math.ceil(h / 4)), max(1, math.ceil(w / 4)))
        self.l1 = nn.Linear(nz, ngf * 2 * self.init_hw[0] * self.init_hw[1])
        self.bn0 = nn.BatchNorm2d(ngf * 2)
        self.block1 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 2, 3, 1, 1), nn.BatchNorm2d(ngf * 2), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf, 3, 1, 1), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2))
        self.to_image = nn.Sequential(nn.Conv2d(ngf, c, 3, 1, 1), nn.BatchNorm2d(c, affine=final_affine))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (x = tanh(x_pre), x_pre), both [N, C, H, W]."""
        out = self.l1(z).view(z.shape[0], -1, *self.init_hw)
        out = self.block1(F.interpolate(self.bn0(out), scale_factor=2))
        out = self.block2(F.interpolate(out, scale_factor=2))
        if tuple(out.shape[-2:]) != self.out_hw:
            out = F.interpolate(out, size=self.out_hw)
        x_pre = self.to_image(out)
        return torch.tanh(x_pre), x_pre


#: How the generator's pre-activation image x_pre becomes a query (see `output_map`).
GENERATOR_OUTPUTS = ("tanh", "tanh-range", "clip")


def pixel_range(norm: dict) -> dict:
    """pixel_low/pixel_high: pixel values 0 and 1 after the normalisation {"mean": [...], "std": [...]}."""
    return {
        "pixel_low": tuple((0.0 - m) / s for m, s in zip(norm["mean"], norm["std"])),
        "pixel_high": tuple((1.0 - m) / s for m, s in zip(norm["mean"], norm["std"])),
    }


def pixel_move_in_levels(eps: float, input_shape: tuple[int, ...], std) -> float:
    """How far a unit direction scaled by `eps` moves each pixel (about eps/√(C·H·W)), in 8-bit input levels
    of an int8 victim: one level is 1/(255·std) after the victim's normalisation (the widest channel's)."""
    return eps / math.sqrt(math.prod(input_shape)) * 255.0 * max(std)


def check_output(mode: str, low: tuple[float, ...], high: tuple[float, ...]) -> None:
    """Raise ValueError unless `mode` is known and its pixel bounds are consistent."""
    if mode not in GENERATOR_OUTPUTS:
        raise ValueError(f"generator_output must be one of {', '.join(GENERATOR_OUTPUTS)}, but it is {mode!r}.")
    if len(low or ()) != len(high or ()):
        raise ValueError(
            f"pixel bounds need one low and one high per channel, got {len(low or ())} and {len(high or ())}."
        )


def check_config(cfg, positive: tuple[str, ...], cost_formula: str) -> None:
    """The checks DFME's and MAZE's configs share: a known output map, counts of at least 1, and a budget
    that pays for one iteration (`cost_formula` names the config's `cost_per_iteration`). Raises ValueError."""
    check_output(cfg.generator_output, cfg.pixel_low, cfg.pixel_high)
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, but it is {getattr(cfg, name)}.")
    if cfg.budget < cfg.cost_per_iteration:
        raise ValueError(
            f"budget {cfg.budget} is below the cost of one iteration, {cost_formula} = {cfg.cost_per_iteration}."
        )


def output_map(mode: str, low: tuple[float, ...] = (), high: tuple[float, ...] = ()):
    """The generator's activation, x_pre → query, per channel with the victim's valid input range [low, high]
    (e.g. pixels 0 and 1 after the victim's normalisation):

    - "tanh": the official DFME/MAZE output. It suits victims normalised to about [−1, 1] (their CIFAR and
      (0.5, 0.5)-normalised MNIST victims); bounds are ignored.
    - "tanh-range": tanh's [−1, 1] mapped affinely onto [low, high]. x_pre's BatchNorm makes the mean
      query mid-grey.
    - "clip": x_pre clipped to [low, high]. x_pre leaves the last BatchNorm with zero mean and unit
      variance per channel, which is exactly the first two moments of the victim's normalised training
      data, so queries look like its inputs on average (mostly dark for MNIST) rather than mid-grey.

    On the embedded default (MNIST-normalised victim, which spans [−0.42, 2.82]) "tanh" can only draw dim
    images, which the victim calls 0, 1 or 8. The quick profile uses "clip" (README, "Data-free attacks
    against an int8 victim", has the figures for both bounded maps).
    """
    check_output(mode, low, high)
    if mode == "tanh":
        return torch.tanh
    if not low:
        raise ValueError(f"generator_output {mode!r} needs the victim's pixel bounds (pixel_low, pixel_high).")
    lo = torch.tensor(low, dtype=torch.float32).view(1, -1, 1, 1)
    hi = torch.tensor(high, dtype=torch.float32).view(1, -1, 1, 1)
    if mode == "clip":
        return lambda x_pre: torch.maximum(torch.minimum(x_pre, hi), lo)
    span = hi - lo
    return lambda x_pre: lo + (torch.tanh(x_pre) + 1.0) * 0.5 * span


def query_map(cfg):
    """`output_map` of a DFME or MAZE config: its generator_output with its pixel bounds."""
    return output_map(cfg.generator_output, cfg.pixel_low, cfg.pixel_high)


def data_free_facts(oracle, cfg, loss_student: float, loss_generator: float) -> dict:
    """The facts DFME and MAZE both return: queries used, iterations, their cost, the last losses."""
    return {
        "queries": int(oracle.queries),
        "iterations": cfg.iterations,
        "cost_per_iteration": cfg.cost_per_iteration,
        "final_loss_student": loss_student,
        "final_loss_generator": loss_generator,
    }
