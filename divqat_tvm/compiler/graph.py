"""A target-neutral int8 graph: what the importers build and the kernels, reference and emitter consume.

Layout is explicit on every activation tensor ("NCHW" from ONNX, "NHWC" from TFLite, "NC" for flat
tensors), so importers of either kind build the same IR and kernels index through the layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from divqat_tvm.errors import CompileError

QMIN, QMAX = -128, 127


@dataclass(frozen=True)
class QTensor:
    """An int8 activation tensor with per-tensor asymmetric quantization (real = scale·(q − zero_point))."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    layout: str = "NCHW"
    dtype: str = "int8"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def nchw(self) -> tuple[int, int, int, int]:
        """(N, C, H, W) whatever the storage layout."""
        if self.layout == "NCHW":
            return tuple(self.shape)  # type: ignore[return-value]
        if self.layout == "NHWC":
            n, h, w, c = self.shape
            return n, c, h, w
        raise CompileError(f"tensor '{self.name}' has layout {self.layout}, not a 4-D image layout.")


@dataclass
class Op:
    """Base of every operator: a name (the source node's), input tensor names, one output tensor name."""

    name: str
    inputs: list[str]
    output: str

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


@dataclass
class Conv2D(Op):
    """int8 conv: weight int8 OIHW [O, I/groups, KH, KW] with per-output-channel scale, int32 bias
    (scale s_in·s_w), fused clamp [act_min, act_max] in the output's integer domain (ReLU = clamp at zp)."""

    weight: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    weight_scale: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    bias: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    act_min: int = QMIN
    act_max: int = QMAX


@dataclass
class Dense(Op):
    """int8 fully connected: weight int8 [out, in], per-output scale, int32 bias, fused clamp."""

    weight: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    weight_scale: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    bias: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    act_min: int = QMIN
    act_max: int = QMAX


@dataclass
class Add(Op):
    """Requantizing elementwise add of two same-shape tensors, fused clamp (ReLU)."""

    act_min: int = QMIN
    act_max: int = QMAX


@dataclass
class MaxPool(Op):
    """int8 max pool; input and output share scale and zero point (padding never wins)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass
class AvgPool(Op):
    """int8 average pool with its own output scale; the divisor is the full window (count_include_pad)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass
class GlobalAvgPool(Op):
    """Mean over H and W, requantized to the output's scale; output keeps 4-D shape [N, C, 1, 1]."""


@dataclass
class Reshape(Op):
    """Flatten/reshape: same bytes, same quantization, new shape (the output tensor's)."""


@dataclass
class Graph:
    """An int8 graph: tensors by name, ops in execution order, one int8 input and one int8 output.

    The float edges (quantize of the input, dequantize of the output) are described by the input and
    output tensors' scale and zero point; the compiled code runs int8 → int8.
    """

    tensors: dict[str, QTensor]
    ops: list[Op]
    input: str
    output: str
    layout: str = "NCHW"
    source: str = ""

    @property
    def input_tensor(self) -> QTensor:
        return self.tensors[self.input]

    @property
    def output_tensor(self) -> QTensor:
        return self.tensors[self.output]


def macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one op (for the manifest and the footprint report)."""
    out = graph.tensors[op.output]
    if isinstance(op, Conv2D):
        n, k, h, w = out.nchw()
        return int(n * k * h * w * np.prod(op.weight.shape[1:]))
    if isinstance(op, Dense):
        return int(out.shape[0] * op.weight.shape[0] * op.weight.shape[1])
    return 0
