"""The int8 operators of a quantized student, as fake-quant torch modules (one per exported ONNX op group).

Each module computes in float what the int8 graph computes in integers: weights per-channel fake-quantized,
bias rounded to int32 at s_in · s_w, ReLU before the output fake quant (so, with the output's zero point at
−128, the int8 clamp is the ReLU), and its own output `ActFakeQuant`. Modules that need the input scale (for
the bias) take it as a second argument, wired explicitly in the traced graph by `quant.prepare`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from divqat_tvm.quant.fake_quant import ActFakeQuant, fake_quantize_bias, fake_quantize_weight


class QConv2d(nn.Module):
    """Conv2d with folded BN, per-channel int8 weights, int32 bias, optional fused ReLU, int8 output."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        relu: bool,
        momentum: float,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.stride, self.padding, self.dilation, self.groups = (
            tuple(stride),
            tuple(padding),
            tuple(dilation),
            int(groups),
        )
        self.relu = bool(relu)
        self.out_fq = ActFakeQuant(momentum)

    def forward(self, x: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
        w, s_w = fake_quantize_weight(self.weight, axis=0)
        b = fake_quantize_bias(self.bias, s_in, s_w)
        y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        return self.out_fq(torch.relu(y) if self.relu else y)

    def extra_repr(self) -> str:
        o, i, kh, kw = self.weight.shape
        return f"{i * self.groups}->{o}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding}, groups={self.groups}, relu={self.relu}"


class QLinear(nn.Module):
    """Linear with per-channel (per output feature) int8 weights, int32 bias and an int8 output."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, momentum: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.out_fq = ActFakeQuant(momentum)

    def forward(self, x: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
        w, s_w = fake_quantize_weight(self.weight, axis=0)
        b = fake_quantize_bias(self.bias, s_in, s_w)
        return self.out_fq(F.linear(x, w, b))


class QAdd(nn.Module):
    """Elementwise add of two int8 tensors (each with its own qparams), optional ReLU, int8 output."""

    def __init__(self, relu: bool, momentum: float) -> None:
        super().__init__()
        self.relu = bool(relu)
        self.out_fq = ActFakeQuant(momentum)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = a + b
        return self.out_fq(torch.relu(y) if self.relu else y)


class QAvgPool(nn.Module):
    """Average pooling (windowed or global) with its own output qparams (the mean leaves the input grid)."""

    def __init__(self, pool: nn.AvgPool2d | nn.AdaptiveAvgPool2d, momentum: float) -> None:
        super().__init__()
        self.pool = pool
        self.out_fq = ActFakeQuant(momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_fq(self.pool(x))
