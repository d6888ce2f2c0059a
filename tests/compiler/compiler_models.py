"""Tiny quantized ONNX models for the compiler tests (helpers, not tests).

`quantize_static_model` goes the way a user of another tool would: a float torch CNN → torch.onnx.export →
onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, int8 activations, MinMax
calibration on a fixed reader). `registry_export` goes our way: registry model → PTQ student →
divqat_tvm.quant.export_onnx.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class TinyNet(nn.Module):
    """Every op kind the compiler handles: conv (stride 2, dilation), depthwise, 1x1, residual add with ReLU,
    max pool, average pool, global average pool, flatten, linear."""

    def __init__(self, avg_pool: bool = True, wide: int = 8) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, wide, 3, padding=1)
        self.c2 = nn.Conv2d(wide, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)
        self.avg_pool = avg_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c1(x))
        y = nn.functional.max_pool2d(y, 2)
        y = torch.relu(self.c2(y))
        z = self.pw(torch.relu(self.dw(y)))
        y = torch.relu(y + z)
        if self.avg_pool:
            y = nn.functional.avg_pool2d(y, 2)
        y = nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)


def quantize_static_model(
    path: Path, input_shape: tuple[int, int, int] = (3, 16, 16), avg_pool: bool = True, seed: int = 0, wide: int = 8
) -> Path:
    """Float TinyNet → ONNX → onnxruntime quantize_static (QDQ, per-channel, QInt8/QInt8)."""
    from coverage_models import quantize_torch

    torch.manual_seed(seed)
    return quantize_torch(TinyNet(avg_pool, wide), path, input_shape, seed)


def registry_export(path: Path, arch: str, input_shape: tuple[int, int, int] = (3, 16, 16), seed: int = 0):
    """Registry model with real BN statistics → PTQ student → our QDQ export. Returns (path, student)."""
    from divqat_tvm.models import build_model
    from divqat_tvm.quant.config import QuantConfig
    from divqat_tvm.quant.export import export_onnx
    from divqat_tvm.quant.prepare import quantize_model

    torch.manual_seed(seed)
    c, h, _ = input_shape
    model = build_model(arch, c, 10, h)
    xs = torch.randn(256, *input_shape)
    model.train()
    with torch.no_grad():
        for i in range(0, 256, 64):
            model(xs[i : i + 64])
    model.eval()
    student = quantize_model(model, QuantConfig(method="ptq"), [xs[i : i + 64] for i in range(0, 256, 64)]).eval()
    export_onnx(student, path, input_shape, meta={"arch": arch})
    return path, student


def random_conv(name, src, dst, cin, cout, rng, kernel=(1, 1), stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1)):
    """A Conv2D of random int8 weights, per-channel scales and int32 bias (the graph tests' building block)."""
    from divqat_tvm.compiler.graph import Conv2D

    return Conv2D(
        name,
        [src],
        dst,
        weight=rng.integers(-127, 128, (cout, cin, *kernel)).astype(np.int8),
        weight_scale=rng.uniform(0.002, 0.02, cout).astype(np.float32),
        bias=rng.integers(-3000, 3000, cout).astype(np.int32),
        stride=stride,
        padding=pad,
        dilation=dil,
    )


def out_hw(h: int, w: int, kernel, stride, pad, dil=(1, 1)) -> tuple[int, int]:
    """A conv's output height and width (padding top, left, bottom, right)."""
    return (
        (h + pad[0] + pad[2] - dil[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
        (w + pad[1] + pad[3] - dil[1] * (kernel[1] - 1) - 1) // stride[1] + 1,
    )


def conv_chain(h, w, cin, cout, kernel, stride, pad, rng, dil=(1, 1), y_channels=4):
    """x -> 1x1 conv -> t1 -> the conv under test -> t2 -> 1x1 conv -> y, NHWC: t1 and t2 are the arena's only
    activations and t1 dies at the conv, so the planner may lay the conv's output over its input."""
    from divqat_tvm.compiler.graph import Graph, QTensor

    oh, ow = out_hw(h, w, kernel, stride, pad, dil)
    t = {
        "x": QTensor("x", (1, h, w, 4), 0.05, 3, layout="NHWC"),
        "t1": QTensor("t1", (1, h, w, cin), 0.06, -5, layout="NHWC"),
        "t2": QTensor("t2", (1, oh, ow, cout), 0.09, 4, layout="NHWC"),
        "y": QTensor("y", (1, oh, ow, y_channels), 0.1, -2, layout="NHWC"),
    }
    ops = [
        random_conv("c1", "x", "t1", 4, cin, rng),
        random_conv("c2", "t1", "t2", cin, cout, rng, kernel, stride, pad, dil),
        random_conv("c3", "t2", "y", cout, y_channels, rng),
    ]
    return Graph(t, ops, "x", "y", layout="NHWC")
