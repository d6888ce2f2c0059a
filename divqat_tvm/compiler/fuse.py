"""A convolution and the residual ADD that consumes it, as one operator (`ConvAdd`): the conv's int8 output never
exists as a tensor, and the ADD's result is written over the residual input where that input dies there
(csrc/conv_rows_s8.c's divqat_conv_rows_add_s8; the arena planner's exact overlap, compiler/inplace.py).

Why: in a residual block the block input x and the second conv's input a are both alive while that conv runs;
with the conv's output beside them the peak is three activations. Fused, it is two.

`residual_adds(graph, scheme)` fuses an ADD with the op just before it when that op is a groups-1 conv whose
only consumer is the ADD and the fused native kernel takes the pair exactly (ops.conv.fused_call: NHWC, "fixed",
the fast epilogues); every other graph stays as it was. `ConvAdd` itself, its kernels and its reference are the conv
family's (compiler/ops/conv.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from divqat_tvm.compiler import inplace, ops
from divqat_tvm.compiler.graph import Add, Conv2D, Graph, Op
from divqat_tvm.compiler.ops.conv import ConvAdd, fused_call


def where_it_lowers_the_peak(graph: Graph, scheme: str) -> Graph:
    """The graph with the fusions that lower its arena's liveness bound (with inplace.scratch_free's choice of
    convs), greedily in graph order; the other pairs stay two ops, each on its faster kernel."""
    names = [op.name for op in residual_adds(graph, scheme).ops if isinstance(op, ConvAdd)]
    if not names:
        return graph
    memo: dict[int, Any] = {}  # id(op) -> its native call: the trial graphs share every op but the fused ones
    best = _peak(graph, scheme, memo)
    chosen: set[str] = set()
    for name in names:
        trial = residual_adds(graph, scheme, chosen | {name})
        peak = _peak(trial, scheme, memo)
        if peak < best:
            chosen.add(name)
            best = peak
    return residual_adds(graph, scheme, chosen) if chosen else graph


def _peak(graph: Graph, scheme: str, memo: dict[int, Any]) -> int:
    calls = {}
    for i, op in enumerate(graph.ops):
        if id(op) not in memo:
            memo[id(op)] = (op, ops.native_call(graph, op, scheme))  # the op kept alive: its id stays its own
        calls[i] = memo[id(op)][1]
    calls.update(inplace.scratch_free(graph, scheme, calls))
    return max(inplace.graph_live_bytes(graph, calls).values(), default=0)


def residual_adds(graph: Graph, scheme: str, only: set[str] | None = None) -> Graph:
    """The graph with each fusable (conv, ADD) pair as one ConvAdd (named "conv+add"; `only`: just these names);
    `graph` itself when there is none."""
    consumers: dict[str, int] = {}
    for op in graph.ops:
        for name in op.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    ops: list[Op] = []
    fused = False
    for op in graph.ops:
        prev = ops[-1] if ops else None
        pair = _fusable(graph, prev, op, consumers, scheme)
        if pair is not None and (only is None or pair.name in only):
            ops[-1] = pair
            fused = True
        else:
            ops.append(op)
    return dataclasses.replace(graph, ops=ops) if fused else graph


def _fusable(graph: Graph, prev: Op | None, op: Op, consumers: dict[str, int], scheme: str) -> ConvAdd | None:
    if not isinstance(op, Add) or type(prev) is not Conv2D:
        return None
    if len(op.inputs) != 2 or prev.output not in op.inputs or op.inputs[0] == op.inputs[1]:
        return None
    if consumers.get(prev.output) != 1 or prev.output in (graph.output, graph.input):
        return None
    residual_first = op.inputs[1] == prev.output
    if op.inputs[0 if residual_first else 1] == prev.inputs[0]:
        return None  # ADD(x, conv(x)): written over its residual, the kernel would clobber its own input
    fields = {f.name: getattr(prev, f.name) for f in dataclasses.fields(Conv2D)}
    fields.update(name=f"{prev.name}+{op.name}", inputs=[prev.inputs[0], op.inputs[0 if residual_first else 1]])
    pair = ConvAdd(
        **{**fields, "output": op.output},
        mid=prev.output,
        add_name=op.name,
        add_act_min=op.act_min,
        add_act_max=op.act_max,
        residual_first=residual_first,
    )
    return pair if fused_call(graph, pair, scheme) is not None else None
