"""Batch-norm folding: conv(x, w) → BN  ==  conv(x, w · γ/σ) + (β − μ · γ/σ), with σ = sqrt(var + eps).

Where we fold, and why: at *preparation*, for PTQ, QAT and DivQAT alike. The student is a copy of a trained
teacher fine-tuned for a few epochs, so its BN statistics are already the teacher's; folding them in up front
makes the graph that trains exactly the graph that is exported (same folded weights, same per-channel weight
scales, same int32 bias), with no train/eval BN switch and no second folding step whose rounding could make
the exported model differ from the fake-quant model that was evaluated. The cost — no batch normalisation
during the short fine-tuning — is the usual trade of "fold first" QAT and is visible in the accuracy figures.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Folded (weight, bias) of conv followed by BN in eval mode (running statistics).

    Computed in float64 and rounded once to float32, so folding adds no error beyond one rounding.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    factor = gamma / torch.sqrt(var + bn.eps)
    w = conv.weight.double() * factor.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    b0 = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    b = beta + (b0 - mean) * factor
    return w.to(torch.float32), b.to(torch.float32)
