"""Hand-written C kernels (csrc/) for the layers where one whole-op function beats a TVM-scheduled loop nest.

TVM still builds the graph, plans the arena and emits the call sequence: each such layer becomes a PrimFunc
whose body is one `call_extern` of the C kernel with the layer's tensors, its constants (weights re-laid out
offline in the order the kernel reads them, per-channel bias and requantization words, a descriptor of the
shapes) and a scratch tensor that TVM allocates in the arena beside the output (live for that call only).
The C sources are pasted into the emitted kernels.c (see `library_source`), so the library stays standalone.

This module is what the kernels share: the call (`NativeCall`), the descriptor and requantisation words
(csrc/divqat_nn.h), the PrimFunc that wraps a call, and the C library pasted into kernels.c. Which layer gets
which kernel, and its constants' re-layout, is its operator family's (compiler/ops/: conv, depthwise, dense,
elementwise); anything a kernel does not cover (NCHW, grouped, "float" requantization) keeps its TE kernel, so no
shape is ever sent to a kernel that does not handle it. The choice is recorded per op in the manifest
(`ops[].kernel`: name and variant).

Arithmetic (csrc/divqat_nn.h): the input zero point is folded into the bias offline (bias' = bias − zp_in·Σw;
padding reads as zp_in, so it contributes zp_in·w and the fold stays exact), and the epilogue is TFLite's
MultiplyByQuantizedMultiplier bit for bit. A layer gets the fast epilogue (DQ_FAST) only when it is exact
for it: every right shift in [1, 22], no left shift, every multiplier above 2^30, |accumulator| < 2^30 for
every input, clamp [−128, 127].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.compiler import requant as rq
from divqat_tvm.errors import CompileError

CSRC = Path(__file__).resolve().parent / "csrc"
HEADER = "divqat_nn.h"

#: C function -> source file in csrc/
SOURCES = {
    "divqat_conv_s8": "conv_s8.c",
    "divqat_dwconv_s8": "dwconv_s8.c",
    "divqat_dwconv_plane_s8": "dwconv_s8.c",
    "divqat_add_s8": "add_s8.c",
    "divqat_conv_rows_s8": "conv_rows_s8.c",
    "divqat_conv_rows_add_s8": "conv_rows_s8.c",
}

# Descriptor words (csrc/divqat_nn.h, enum DQ_*)
DESC_FIELDS = (
    "ih",
    "iw",
    "cin",
    "oh",
    "ow",
    "cout",
    "kh",
    "kw",
    "sh",
    "sw",
    "dh",
    "dw",
    "pt",
    "pl",
    "zp_in",
    "zp_out",
    "lo",
    "hi",
    "k",
    "kp",
    "flags",
)

FLAG_FAST, FLAG_DIRECT, FLAG_F64, FLAG_DWPAIR, FLAG_HAWAY = 1, 2, 4, 8, 16
QP_WORDS = 4
FAST_MAX_SHIFT = 22  # zp_out << a must fit beside the rounding constant and |hi| < 2^30 in int32
ACC_LIMIT = 1 << 30  # the fast epilogue doubles the accumulator before SMMULR


@dataclass
class NativeCall:
    """One layer run by a hand-written C kernel: what the extern call passes and what the manifest records."""

    function: str
    consts: list[np.ndarray]
    scratch_bytes: int
    out_shape: tuple[int, ...]
    variant: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[int, ...] = (0,)  # which of the op's inputs (activations) are passed, in order, before the constants


def round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def requant_words(
    real: np.ndarray, bias_folded: np.ndarray, zp_out: int, lo: int, hi: int, acc_bound: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Per-channel [bias', M, a, b] (int32, DQ_QP_WORDS each) and whether the fast epilogue is exact here."""
    m, shift = rq.quantize_multipliers(real)
    a = -shift.astype(np.int64)
    fast = bool(
        np.all(a >= 1)
        and np.all(a <= FAST_MAX_SHIFT)
        and np.all(m > (1 << 30))
        and lo == -128
        and hi == 127
        and np.all(acc_bound < ACC_LIMIT)
    )
    if fast:
        b = (np.int64(1) << (a - 1)) + (np.int64(zp_out) << a)
    else:
        b = np.zeros_like(a)
    qp = np.stack([bias_folded.astype(np.int64), m.astype(np.int64), a, b], axis=1)
    if np.any(qp > np.iinfo(np.int32).max) or np.any(qp < np.iinfo(np.int32).min):
        raise CompileError("a requantization constant overflows int32.", "This is a compiler bug; report it.")
    return qp.astype(np.int32), fast


def pad_channels(qp: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Repeat the last channel's words up to a multiple of `multiple` channels (the MVE epilogue loads 4)."""
    extra = round_up(len(qp), multiple) - len(qp)
    return np.concatenate([qp, np.repeat(qp[-1:], extra, axis=0)]) if extra else qp


def desc(**kw: int) -> np.ndarray:
    return np.array([int(kw[f]) for f in DESC_FIELDS], dtype=np.int32)


def out_types(call: NativeCall) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of the call's outputs: y, then the scratch if it has one."""
    outs = [(tuple(call.out_shape), "int8")]
    if call.scratch_bytes:
        outs.append(((call.scratch_bytes,), "int8"))
    return outs


def prim_func(call: NativeCall, in_shapes: list[tuple[int, ...]], name: str) -> Any:
    """The PrimFunc wrapping the call: (inputs..., consts..., y[, scratch]) → call_extern(function, same order)."""
    from tvm import te, tirx

    ins = [te.placeholder(tuple(sh), "int8", name=f"x{i}") for i, sh in enumerate(in_shapes)]
    ins += [te.placeholder(c.shape, str(c.dtype), name=f"c{i}") for i, c in enumerate(call.consts)]
    outs = out_types(call)
    res = te.extern(
        [o[0] for o in outs],
        ins,
        lambda i, o: tirx.call_extern("int32", call.function, *[b.data for b in i], *[b.data for b in o]),
        dtype=[o[1] for o in outs],
        name="y",
    )
    res = res if isinstance(res, list) else [res]
    return te.create_prim_func([*ins, *res]).with_attr("divqat_native", name)


def kernel_path(core: str | None) -> str:
    """Which path of the C kernels the named core compiles: "mve", "dsp", "c", or "by-compiler" (no core)."""
    if core is None:
        return "by-compiler"
    from divqat_tvm.targets import load_core

    c = load_core(core)
    return "mve" if c.mve else "dsp" if c.dsp else "c"


_INCLUDE = re.compile(r'^#include "divqat_nn\.h"\n', re.M)


def used_functions(c_src: str) -> list[str]:
    """The entries of SOURCES that `c_src` (TVM's C) calls."""
    return [f for f in SOURCES if re.search(rf"\b{f}\(", c_src)]


def use_define(function: str) -> str:
    """The macro library_source defines for a used entry: a source with two entries compiles only the code of the
    ones defined (csrc/dwconv_s8.c), so a path no layer takes costs no flash."""
    return f"DIVQAT_USE_{function}"


def library_source(functions: list[str]) -> str:
    """The header and the sources of `functions`, ready to paste into kernels.c (no local includes), after one
    `#define DIVQAT_USE_<function> 1` per function."""
    if not functions:
        return ""
    parts = ["".join(f"#define {use_define(f)} 1\n" for f in functions) + (CSRC / HEADER).read_text()]
    for file in dict.fromkeys(SOURCES[f] for f in functions):  # a file with two entries is pasted once
        parts.append(_INCLUDE.sub("", (CSRC / file).read_text()))
    return "\n".join(parts)


def strip_tvm_declarations(src: str) -> str:
    """TVM declares every call_extern target (`TVM_DLL int32_t f(int8_t*, ...);`): ours are defined (static) in
    the pasted library instead."""
    for f in SOURCES:
        src = re.sub(rf"#ifdef __cplusplus\nextern \"C\"\n#endif\nTVM_DLL int32_t {f}\([^)]*\);\n", "", src)
    return src
