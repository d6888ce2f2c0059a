"""The building blocks every registry model is made of.

Quantization (`divqat_tvm.quant`) traces models with torch.fx and knows exactly these blocks, so a model
built from them can be folded, fake-quantized, exported to ONNX QDQ and compiled without per-model code:
`ConvBNAct` (conv + batch norm + optional ReLU), `ResidualAdd` (add + optional ReLU), `nn.MaxPool2d`,
`nn.AvgPool2d`, `nn.AdaptiveAvgPool2d(1)`, `nn.Flatten` and `nn.Linear`.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """Conv2d without bias, BatchNorm2d, optional ReLU: folded into one int8 conv with fused ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return torch.relu(y) if self.relu else y


class ResidualAdd(nn.Module):
    """Elementwise add of two branches, optional ReLU: one requantizing int8 add."""

    def __init__(self, relu: bool = True) -> None:
        super().__init__()
        self.relu = relu

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = a + b
        return torch.relu(y) if self.relu else y
