"""Data movement: Reshape/Flatten, Transpose, constant Pad and Concat (each input through its own requantisation
table, as onnxruntime's QLinearConcat), each with its TE kernel and numpy reference. The codes are copied; only
Concat may change an input's quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler.graph import Graph, Op, Reshape
from divqat_tvm.compiler.ops import common as C
from divqat_tvm.compiler.ops.elementwise import unary_table


@dataclass
class _Moves(Op):
    """The movement ops defined here: each brings its TE kernel and its reference."""

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        raise NotImplementedError

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        raise NotImplementedError


def claims(op: Op) -> bool:
    return isinstance(op, (Reshape, _Moves))


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    if isinstance(op, _Moves):
        return op.te_kernel(graph, scheme)
    assert isinstance(op, Reshape)
    return reshape, [], dict(shape=graph.tensors[op.output].shape)


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    if isinstance(op, _Moves):
        return op.reference(graph, inputs, scheme)
    x = np.asarray(inputs[0])
    return x.reshape((x.shape[0],) + tuple(graph.tensors[op.output].shape[1:]))


def native_call(graph: Graph, op: Op, scheme: str) -> None:
    """No hand-written kernel: a copy TVM emits as a loop (a Reshape's in place where the planner can)."""
    return None


BLOCKS: dict[str, dict[str, str]] = {}


def reshape(x, *, shape: tuple[int, ...]):
    """Flatten/reshape as a copy in row-major order (same bytes, new shape)."""
    in_shape = [int(d) for d in x.shape]
    strides = [int(np.prod(in_shape[i + 1 :])) for i in range(len(in_shape))]
    out_strides = [int(np.prod(shape[i + 1 :])) for i in range(len(shape))]

    def f(*i):
        flat = sum(ix * s for ix, s in zip(i, out_strides))
        idx = [(flat // s) % d for s, d in zip(strides, in_shape)]
        return x[tuple(idx)]

    return te.compute(tuple(shape), f, name="out")


# ---------------------------------------------------------------- data movement (same codes, same qparams)
@dataclass
class Transpose(_Moves):
    """Permute the axes (ONNX Transpose, `perm`); the codes are copied unchanged."""

    perm: tuple[int, ...] = ()

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        return transpose, [], dict(perm=tuple(self.perm))

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(np.asarray(inputs[0]), self.perm)).astype(np.int8)


def transpose(x, *, perm: tuple[int, ...]):
    """TE: out[i_0, ..., i_k] = x[j] with j[perm[d]] = i_d."""
    shape = tuple(int(x.shape[p]) for p in perm)

    def f(*i):
        j = [None] * len(perm)
        for d, p in enumerate(perm):
            j[p] = i[d]
        return x[tuple(j)]

    return te.compute(shape, f, name="out")


# ---------------------------------------------------------------- Concat: each input through its own table
@dataclass
class Concat(_Moves):
    """ONNX Concat of int8 tensors along `axis`; an input whose scale or zero point differs from the output's
    is requantized by a table, as onnxruntime's QLinearConcat does."""

    axis: int = 1

    def tables(self, graph: Graph) -> np.ndarray:
        to = graph.tensors[self.output]
        rows = []
        for name in self.inputs:
            ti = graph.tensors[name]
            rows.append(unary_table("identity", ti.scale, ti.zero_point, to.scale, to.zero_point))
        return np.concatenate(rows).astype(np.int8)

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        sizes = tuple(graph.tensors[n].shape[self.axis] for n in self.inputs)
        return concat, [self.tables(graph)], dict(axis=self.axis, sizes=sizes)

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        t = self.tables(graph).reshape(len(self.inputs), 256)
        parts = [t[k][np.asarray(a).astype(np.int64) + 128] for k, a in enumerate(inputs)]
        return np.concatenate(parts, axis=self.axis).astype(np.int8)


def concat(*args, axis: int, sizes: tuple[int, ...]):
    """TE: the inputs side by side along `axis`, each read through its table (args: inputs..., tables)."""
    *xs, table = args
    shape = list(xs[0].shape)
    shape[axis] = sum(sizes)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]

    def f(*i):
        def read(k):
            j = list(i)
            j[axis] = i[axis] - starts[k]
            return table[k * 256 + xs[k][tuple(j)].astype("int32") + 128]

        v = read(len(xs) - 1)
        for k in range(len(xs) - 2, -1, -1):
            v = tirx.Select(i[axis] < starts[k + 1], read(k), v)
        return v

    return te.compute(tuple(shape), f, name="out")


# ---------------------------------------------------------------- Pad (constant mode)
@dataclass
class Pad(_Moves):
    """ONNX Pad, mode "constant": `before` / `after` elements per axis, filled with the code of the constant
    (QuantizeLinear of its float value at the tensor's scale and zero point; input and output share them)."""

    before: tuple[int, ...] = ()
    after: tuple[int, ...] = ()
    value: int = 0

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        return pad, [], dict(before=tuple(self.before), after=tuple(self.after), value=int(self.value))

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        x = np.asarray(inputs[0])
        widths = [(0, 0)] + list(zip(self.before[1:], self.after[1:]))  # any batch size
        return np.pad(x, widths, constant_values=self.value).astype(np.int8)


def pad(x, *, before: tuple[int, ...], after: tuple[int, ...], value: int):
    """TE: out[i] = x[i − before] inside the input, else the constant's code."""
    shape = tuple(int(d) + b + a for d, b, a in zip(x.shape, before, after))

    def f(*i):
        inside = tirx.const(True, "bool")
        for d, b in enumerate(before):
            if b or after[d]:
                inside = tirx.all(inside, i[d] >= b, i[d] < b + int(x.shape[d]))
        src = tuple(tirx.max(tirx.min(i[d] - b, int(x.shape[d]) - 1), 0) for d, b in enumerate(before))
        return tirx.Select(inside, x[src], tirx.const(value, "int8"))

    return te.compute(shape, f, name="out")


# ---------------------------------------------------------------- the NCHW -> NHWC conversion's ops (layout.py)
@dataclass
class _LayoutTranspose(_Moves):
    """A fixed permutation of a 4-D tensor's axes (`PERM`), same bytes per element and quantization."""

    PERM: ClassVar[tuple[int, int, int, int]]

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        return transpose, [], dict(perm=self.PERM)

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(inputs[0]).transpose(self.PERM))


@dataclass
class NchwToNhwc(_LayoutTranspose):
    """[N, C, H, W] → [N, H, W, C]."""

    PERM = (0, 2, 3, 1)

    @property
    def kind(self) -> str:
        return "nchw_to_nhwc"


@dataclass
class NhwcToNchw(_LayoutTranspose):
    """[N, H, W, C] → [N, C, H, W]."""

    PERM = (0, 3, 1, 2)

    @property
    def kind(self) -> str:
        return "nhwc_to_nchw"


@dataclass
class FlattenNchwOrder(_Moves):
    """NHWC [N, H, W, C] → [N, C·H·W] in NCHW order (what the source model's flatten produced)."""

    @property
    def kind(self) -> str:
        return "flatten_nchw_order"

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        return flatten_nchw_order, [], {}

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        x = np.asarray(inputs[0])
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), -1)


def flatten_nchw_order(x):
    """TE: out[b, i] = x[b, h, w, c] with i = (c·H + h)·W + w."""
    n, h, w, c = (int(d) for d in x.shape)
    return te.compute((n, c * h * w), lambda b, i: x[b, (i // w) % h, i % w, i // (h * w)], name="out")
