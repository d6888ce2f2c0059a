"""Shared student training on (input, returned probabilities) pairs: KnockoffNets' transfer-set training
and offline replay of a query log use it; DFME and MAZE interleave their own steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class FitConfig:
    """SGD schedule for fitting a student on a fixed transfer set (KnockoffNets' defaults).

    Attributes:
        epochs: passes over the transfer set (official 100).
        batch_size: official 64.
        lr: official 0.01.
        momentum: official 0.5.
        weight_decay: 0 (the knockoff defaults set none we rely on).
        lr_step: epoch at which lr is multiplied by `lr_gamma` (official 60, scaled with `epochs`).
        lr_gamma: official 0.1.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.5
    weight_decay: float = 0.0
    lr_step: int = 60
    lr_gamma: float = 0.1


def fit_student(
    student: nn.Module,
    x: np.ndarray,
    p: np.ndarray,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: FitConfig,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Train `student` in place on (x, p) with `loss_fn(logits, p)`; returns the last epoch's mean loss.

    `on_epoch(epoch, loss)` is called after each epoch (progress bars, stolen-accuracy checks).
    """
    gen = torch.Generator().manual_seed(seed)
    xt, pt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(p, np.float32))
    opt = torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_step), gamma=cfg.lr_gamma)
    mean = float("nan")
    for epoch in range(cfg.epochs):
        student.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm cannot train on a single image
            loss = loss_fn(student(xt[idx]), pt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        sched.step()
        mean = total / max(n, 1)
        if on_epoch is not None:
            on_epoch(epoch, mean)
    student.eval()
    return mean
