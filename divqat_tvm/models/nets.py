"""The registry's CNNs, each built only from `blocks.ConvBNAct` / `blocks.ResidualAdd` and plain pooling,
flatten and linear modules, so torch.fx traces them and `divqat_tvm.quant` needs no per-model code.

All take any channel count, class count and input size (pooling stages that would shrink a side below one
pixel are left out).
"""

from __future__ import annotations

import torch
from torch import nn

from divqat_tvm.models.blocks import ConvBNAct, ResidualAdd


def _head(channels: int, num_classes: int) -> nn.Sequential:
    """Global average pool → flatten → linear: the classifier every model ends with."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class ResNetStack(nn.Module):
    """MLPerf Tiny ResNet stack: conv-bn-relu, conv-bn, + shortcut (identity or 1x1 strided conv), relu."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride)
        self.conv2 = ConvBNAct(cout, cout, 3, 1, relu=False)
        self.shortcut = ConvBNAct(cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else None
        self.add = ResidualAdd(relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.add(y, s)


class ResNet8(nn.Module):
    """ResNet-8 in the MLPerf Tiny image-classification shape (16/32/64 filters, ~78k parameters).

    The 1x1 shortcut convs carry a batch norm here (MLPerf's have a bias): after folding the two are the
    same int8 conv, and the MAC count is identical (12,501,632 at 3x32x32, 10 classes).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        self.stem = ConvBNAct(in_channels, 16, 3, 1)
        self.stack1 = ResNetStack(16, 16, 1)
        self.stack2 = ResNetStack(16, 32, 2)
        self.stack3 = ResNetStack(32, 64, 2)
        self.head = _head(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stack3(self.stack2(self.stack1(self.stem(x)))))


class VGGSmall(nn.Module):
    """A small VGG: conv16-conv16-pool-conv32-conv32-pool-conv64-pool, global average pool, linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = in_channels, input_size
        for stage in ((16, 16), (32, 32), (64,)):
            for cout in stage:
                layers.append(ConvBNAct(cin, cout, 3, 1))
                cin = cout
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.head = _head(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DSCNN(nn.Module):
    """Depthwise-separable CNN (MobileNet / MLPerf DS-CNN style): a 3x3 conv stem, then blocks of
    depthwise 3x3 (groups = channels) + pointwise 1x1, global average pool, linear."""

    BLOCKS = ((64, 1), (64, 2), (128, 1), (128, 2))  # (pointwise channels, depthwise stride)

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        stem_stride = 2 if input_size >= 16 else 1
        layers: list[nn.Module] = [ConvBNAct(in_channels, 32, 3, stem_stride)]
        cin = 32
        for cout, stride in self.BLOCKS:
            layers.append(ConvBNAct(cin, cin, 3, stride, groups=cin))
            layers.append(ConvBNAct(cin, cout, 1, 1))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = _head(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyCNN(nn.Module):
    """The embedded default's model: three convs (two strided), global average pool, linear (~13k params)."""

    WIDTHS = ((12, 2), (24, 2), (48, 1))  # (channels, stride)

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout, stride in self.WIDTHS:
            layers.append(ConvBNAct(cin, cout, 3, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = _head(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
