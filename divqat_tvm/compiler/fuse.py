"""A convolution and the residual ADD that consumes it, as one operator (`ConvAdd`): the conv's int8 output never
exists as a tensor, and the ADD's result is written over the residual input where that input dies there
(csrc/conv_rows_s8.c's divqat_conv_rows_add_s8; the arena planner's exact overlap, compiler/inplace.py).

Why: in a residual block the block input x and the second conv's input a are both alive while that conv runs;
with the conv's output beside them the peak is three activations. Fused, it is two.

`residual_adds(graph, scheme)` fuses an ADD with the op just before it when that op is a groups-1 conv whose
only consumer is the ADD and the fused native kernel takes the pair exactly (native.fused_call: NHWC, "fixed",
the fast epilogues); every other graph stays as it was. The semantics are the two ops' own, one after the other:
the numpy reference and the TE kernel (for `--tune`'s "te" candidate) compose the conv's and the ADD's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from divqat_tvm.compiler import inplace, native, reference
from divqat_tvm.compiler import kernels as K
from divqat_tvm.compiler.graph import Add, Conv2D, Graph, Op


@dataclass
class ConvAdd(Conv2D):
    """conv(inputs[0]) -> `mid` (never stored), then ADD(mid, inputs[1]) -> output with the ADD's clamp. The conv's
    fields are the conv's; `residual_first`: the residual was the ADD's first input (TFLite ADD's order)."""

    mid: str = ""
    add_name: str = ""
    add_act_min: int = -128
    add_act_max: int = 127
    residual_first: bool = False

    @property
    def kind(self) -> str:
        return "conv2d_add"

    def conv(self) -> Conv2D:
        """The conv alone (input inputs[0], output `mid`)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Conv2D)}
        return Conv2D(**{**fields, "inputs": [self.inputs[0]], "output": self.mid})

    def add(self) -> Add:
        pair = [self.inputs[1], self.mid] if self.residual_first else [self.mid, self.inputs[1]]
        return Add(self.add_name, pair, self.output, act_min=self.add_act_min, act_max=self.add_act_max)

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        env = {self.inputs[0]: inputs[0], self.inputs[1]: inputs[1]}
        env[self.mid] = reference._run_op(graph, self.conv(), env, scheme).astype(np.int8)
        return reference._run_op(graph, self.add(), env, scheme)

    def te_kernel_for(self, graph: Graph, scheme: str) -> tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]:
        """The conv's TE kernel with the ADD's stages after it (lower.schedule computes them under the conv's
        spatial loops): the same integers as the two TE kernels one after the other."""
        from divqat_tvm.compiler.lower import _requant_arrays

        conv, add = self.conv(), self.add()
        ti, tm, to = (graph.tensors[n] for n in (self.inputs[0], self.mid, self.output))
        ta, tb = (graph.tensors[n] for n in add.inputs)
        consts: list[np.ndarray] = [
            np.ascontiguousarray(conv.weight.astype(np.int8).transpose(0, 2, 3, 1)),
            conv.bias.astype(np.int32),
            *_requant_arrays(conv, ti.scale, tm.scale, scheme),
        ]
        conv_kw = dict(
            layout=ti.layout,
            in_nchw=ti.nchw(),
            out_nchw=tm.nchw(),
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            zp_in=ti.zero_point,
            r=K.Requant(scheme, tm.zero_point, conv.act_min, conv.act_max),
        )
        add_kw = dict(
            zp_a=ta.zero_point,
            zp_b=tb.zero_point,
            s_a=ta.scale,
            s_b=tb.scale,
            s_out=to.scale,
            r=K.Requant(scheme, to.zero_point, add.act_min, add.act_max),
        )
        fparams: list[np.ndarray] = (
            []
            if scheme == "fixed"
            else [K.add_float_params(ta.zero_point, tb.zero_point, ta.scale, tb.scale, to.scale, to.zero_point)]
        )
        n_conv = len(consts)
        return (
            functools.partial(
                _conv_add_te, n_conv=n_conv, residual_first=self.residual_first, conv_kw=conv_kw, add_kw=add_kw
            ),
            consts + fparams,
            {},
        )


def _conv_add_te(x: Any, res: Any, *consts: Any, n_conv: int, residual_first: bool, conv_kw: dict, add_kw: dict) -> Any:
    y = K.conv2d(x, *consts[:n_conv], **conv_kw)
    a, b = (res, y) if residual_first else (y, res)
    return K.add(a, b, *consts[n_conv:], **add_kw)


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
            memo[id(op)] = (op, native.select(graph, op, scheme))  # the op kept alive: its id stays its own
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
    if not isinstance(op, Add) or hasattr(op, "te_kernel") or type(prev) is not Conv2D:
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
    return pair if native.fused_call(graph, pair, scheme) is not None else None
