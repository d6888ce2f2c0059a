"""NCHW → NHWC conversion of an imported int8 graph (ONNX exports are NCHW), so the NHWC hand-written kernels
(compiler/ops/) serve ONNX models too.

The compiled model keeps the source model's interface: the input stays NCHW (a first op, `NchwToNhwc`,
transposes it into the arena), and a 4-D output is transposed back (`NhwcToNchw`). Every 4-D activation
inside becomes NHWC; convolution weights are already laid out by the kernels from OIHW, and every 4-D op
(conv, pools, add) takes its layout from its tensors. A flatten of an NCHW tensor orders its values
(c, h, w): on NHWC data it becomes `FlattenNchwOrder` (a gather in that order) unless H = W = 1 (then the
orders agree and it stays a plain reshape). The new ops are data movement (compiler/ops/movement.py,
with their TE kernels and numpy references), so the rest of the compiler and the reference need no change. A Concat of 4-D tensors
gets its axis moved; elementwise ops (Lut, Mul of same-rank operands) do not depend on the order. A graph with
anything else (a 4-D → 4-D reshape, a Transpose) is returned unchanged.
"""

from __future__ import annotations

import dataclasses

from divqat_tvm.compiler.graph import Add, AvgPool, Conv2D, Dense, GlobalAvgPool, Graph, MaxPool, Op, QTensor, Reshape
from divqat_tvm.compiler.ops.elementwise import Lut, Mul
from divqat_tvm.compiler.ops.movement import Concat, FlattenNchwOrder, NchwToNhwc, NhwcToNchw, Pad, Transpose
from divqat_tvm.compiler.ops.pooling import AvgPoolWindowed
from divqat_tvm.compiler.ops.softmax import SoftmaxOrt

# Ops that read their layout from their tensors, or (Lut, Mul of same-rank operands) do not depend on it.
_LAYOUT_FREE = (Conv2D, Dense, Add, MaxPool, AvgPool, GlobalAvgPool, AvgPoolWindowed, Lut, Mul)
_NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)  # where NCHW axis a sits in NHWC


def to_nhwc(graph: Graph) -> Graph:
    """The same computation with NHWC activations inside (interface unchanged); `graph` itself if it has no NCHW
    activations or holds something the conversion does not handle."""
    t = graph.tensors
    if not any(q.layout == "NCHW" for q in t.values()):
        return graph
    tensors: dict[str, QTensor] = {}
    for name, q in t.items():
        if q.layout == "NCHW" and name not in (graph.input, graph.output):
            n, c, h, w = q.shape
            q = dataclasses.replace(q, shape=(n, h, w, c), layout="NHWC")
        tensors[name] = q
    rename: dict[str, str] = {}
    ops: list[Op] = []
    src = t[graph.input]
    if src.layout == "NCHW":
        n, c, h, w = src.shape
        inner = f"{graph.input}_nhwc"
        tensors[inner] = dataclasses.replace(src, name=inner, shape=(n, h, w, c), layout="NHWC")
        ops.append(NchwToNhwc(f"{graph.input}_to_nhwc", [graph.input], inner))
        rename[graph.input] = inner
    out_src = t[graph.output]
    out_inner = graph.output
    if out_src.layout == "NCHW":
        n, c, h, w = out_src.shape
        out_inner = f"{graph.output}_nhwc"
        tensors[out_inner] = dataclasses.replace(out_src, name=out_inner, shape=(n, h, w, c), layout="NHWC")
    for op in graph.ops:
        inputs = [rename.get(i, i) for i in op.inputs]
        output = out_inner if op.output == graph.output else op.output
        if isinstance(op, Transpose) and op.perm == (0, 3, 1, 2) and t[op.inputs[0]].layout == "NHWC":
            ops.append(Reshape(op.name, inputs, output))  # NHWC → NCHW, which becomes NHWC: the same bytes
            continue
        if isinstance(op, (Concat, SoftmaxOrt)):
            if len(t[op.output].shape) == 4:
                op = dataclasses.replace(op, axis=_NCHW_TO_NHWC_AXIS[op.axis])
        elif isinstance(op, Pad):
            if len(op.before) != 4:
                return graph
            nhwc = (0, 2, 3, 1)  # NHWC axis d is NCHW axis nhwc[d]
            op = dataclasses.replace(
                op, before=tuple(op.before[a] for a in nhwc), after=tuple(op.after[a] for a in nhwc)
            )
        elif isinstance(op, Mul):
            if len({len(t[n].shape) for n in op.inputs}) != 1:
                return graph  # operands of different rank broadcast differently once permuted
        elif not isinstance(op, (Reshape, *_LAYOUT_FREE)):
            return graph  # an op whose meaning depends on the axis order (Transpose, ...): not converted
        if type(op) is Reshape:
            ti, to = t[op.inputs[0]], t[op.output]
            if len(to.shape) == 4:
                return graph  # a reshape into a 4-D tensor: its bytes are in NCHW order, not converted
            if ti.layout == "NCHW" and ti.shape[2] * ti.shape[3] != 1:
                ops.append(FlattenNchwOrder(op.name, inputs, output))
                continue
        ops.append(dataclasses.replace(op, inputs=inputs, output=output))
    if out_inner != graph.output:
        ops.append(NhwcToNchw(f"{graph.output}_to_nchw", [out_inner], graph.output))
    return Graph(tensors, ops, graph.input, graph.output, layout=graph.layout, source=graph.source)
