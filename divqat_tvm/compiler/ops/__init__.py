"""The operator families, one module each: its ops' TE kernels, numpy references, hand-written kernels (the
schedules besides TVM's) and their constants' re-layout. Lowering, the reference interpreter, the tuner and the
manifest reach every op through the four functions here, so a new op kind touches only its family's module.

| family | ops | hand-written kernel |
| --- | --- | --- |
| `conv` | Conv2D (groups 1 or grouped), ConvAdd (conv + residual ADD) | csrc/conv_s8.c, csrc/conv_rows_s8.c |
| `depthwise` | depthwise Conv2D | csrc/dwconv_s8.c |
| `dense` | Dense, TfliteDense | csrc/conv_s8.c (one 1x1 pixel) |
| `pooling` | MaxPool, AvgPool, GlobalAvgPool, AvgPoolWindowed, TfliteAvgPool | — |
| `elementwise` | Add, Mul, Lut | csrc/add_s8.c |
| `softmax` | Softmax, SoftmaxOrt | — |
| `movement` | Reshape, Transpose, Pad, Concat | — |

Each family module has `claims(op)`, `te_kernel(graph, op, scheme)` (→ `common.KernelSpec`),
`reference(graph, op, inputs, scheme)`, `native_call(graph, op, scheme)` (a `native.NativeCall` or None: the TE
kernel) and `BLOCKS` (the manifest's description of each C kernel's register block per path); a family with more
than one schedule for a layer adds `extra_candidates(graph, op, scheme, call)`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from divqat_tvm.compiler import native
from divqat_tvm.compiler.graph import Graph, Op
from divqat_tvm.compiler.native import NativeCall
from divqat_tvm.compiler.ops import common, conv, dense, depthwise, elementwise, movement, pooling, softmax
from divqat_tvm.errors import CompileError

FAMILIES: tuple[ModuleType, ...] = (depthwise, conv, dense, pooling, elementwise, softmax, movement)
BLOCKS: dict[str, dict[str, str]] = {k: v for f in FAMILIES for k, v in f.BLOCKS.items()}


def family(op: Op) -> ModuleType:
    """The module that implements `op`."""
    for f in FAMILIES:
        if f.claims(op):
            return f
    raise CompileError(f"no kernel for '{op.kind}' (node '{op.name}').", "Use a supported operator.")


def te_kernel(graph: Graph, op: Op, scheme: str) -> common.KernelSpec:
    """(TE function, constants after the op's inputs, keyword parameters) of the op's TVM-scheduled kernel."""
    if scheme not in common.SCHEMES:
        raise CompileError(f"unknown requantization scheme '{scheme}'.", f"Use one of {', '.join(common.SCHEMES)}.")
    return family(op).te_kernel(graph, op, scheme)


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    """The op's int8 output by its numpy reference."""
    return family(op).reference(graph, op, inputs, scheme)


def native_call(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    """The hand-written kernel call for `op`, or None (the op keeps its TE kernel)."""
    return family(op).native_call(graph, op, scheme)


def candidates(graph: Graph, op: Op, scheme: str) -> dict[str, NativeCall | None]:
    """The layer's candidate kernels in order (the default first); None stands for the TE kernel."""
    call = native_call(graph, op, scheme)
    if call is None:
        return {"te": None}
    f = family(op)
    extra = f.extra_candidates(graph, op, scheme, call) if hasattr(f, "extra_candidates") else {}
    return {"native": call, **extra, "te": None}


def manifest_entry(call: NativeCall | None, core: str | None) -> dict[str, Any]:
    """The manifest's `ops[].kernel` for a native call, or for a TVM-generated kernel (None)."""
    if call is None:
        return {"name": "tvm", "variant": {"source": "TE kernel scheduled by TVM (compiler/ops/)"}}
    path = native.kernel_path(core)
    block = BLOCKS[call.function].get(path, "chosen when compiled")
    return {
        "name": call.function,
        "variant": {"path": path, "block": block, **call.variant},
        "scratch_bytes": call.scratch_bytes,
    }
