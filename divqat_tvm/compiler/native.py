"""Hand-written C kernels (csrc/) for the layers where one whole-op function beats a TVM-scheduled loop nest.

TVM still builds the graph, plans the arena and emits the call sequence: each such layer becomes a PrimFunc
whose body is one `call_extern` of the C kernel with the layer's tensors, its constants (weights re-laid out
offline in the order the kernel reads them, per-channel bias and requantization words, a descriptor of the
shapes) and a scratch tensor that TVM allocates in the arena beside the output (live for that call only).
The C sources are pasted into the emitted kernels.c (see `library_source`), so the library stays standalone.

Which layers: NHWC convolutions with groups 1 (the GEMM kernel, `divqat_conv_s8`), NHWC depthwise
convolutions with depth multiplier 1 (`divqat_dwconv_s8`: the tap-pair path for 3x3 layers with the fast
epilogue, any channel count, its weights and requantization words in one per-channel stream; the channel-group
ring for the others, C % 4 == 0; small stride-2 planes `divqat_dwconv_plane_s8`), and fully connected layers
(the GEMM kernel over one pixel), all with requant "fixed". TFLite's FULLY_CONNECTED rounds in double
precision (LiteRT's reference): its layers get an integer multiplier and shift where `f64_as_fixed` proves them
equal for every accumulator (DQ_HAWAY), else the double computation itself (DQ_F64). Anything else (NCHW,
grouped, "float" requantization) keeps the TE kernels of kernels.py: no shape is ever sent to a kernel that
does not handle it. The choice is recorded per op in the manifest (`ops[].kernel`: name and variant).

Arithmetic (csrc/divqat_nn.h): the input zero point is folded into the bias offline (bias' = bias − zp_in·Σw;
padding reads as zp_in, so it contributes zp_in·w and the fold stays exact), and the epilogue is TFLite's
MultiplyByQuantizedMultiplier bit for bit. A layer gets the fast epilogue (DQ_FAST) only when it is exact
for it: every right shift in [1, 22], no left shift, every multiplier above 2^30, |accumulator| < 2^30 for
every input, clamp [−128, 127].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import Add, Conv2D, Dense, Graph, Op, QTensor
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


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def _requant_words(
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


def _pad_channels(qp: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Repeat the last channel's words up to a multiple of `multiple` channels (the MVE epilogue loads 4)."""
    extra = _round_up(len(qp), multiple) - len(qp)
    return np.concatenate([qp, np.repeat(qp[-1:], extra, axis=0)]) if extra else qp


def _desc(**kw: int) -> np.ndarray:
    return np.array([int(kw[f]) for f in DESC_FIELDS], dtype=np.int32)


def _folded_bias(bias: np.ndarray, w2d: np.ndarray, zp_in: int, name: str) -> np.ndarray:
    b = bias.astype(np.int64) - zp_in * w2d.astype(np.int64).sum(axis=1)
    if np.any(np.abs(b) >= 2**31):
        raise CompileError(
            f"the bias of '{name}' overflows int32 after folding the zero point.", "Re-quantize the model."
        )
    return b


def chunk_rows(rows: np.ndarray) -> np.ndarray:
    """[C4, KP] weight rows (C4 a multiple of 4) in csrc/conv_s8.c's order: zero-padded to a multiple of 16
    values, each group of 4 rows interleaved in 16-byte chunks ([c0 k0..15][c1 k0..15][c2 ..][c3 ..][c0
    k16..31]...). Flat int8."""
    c4, kp = rows.shape
    k16 = _round_up(kp, 16)
    padded = np.zeros((c4, k16), np.int8)
    padded[:, :kp] = rows
    g = padded.reshape(c4 // 4, 4, k16 // 16, 16).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(g.reshape(-1))


def _gemm_call(
    name: str,
    w2d: np.ndarray,
    bias: np.ndarray,
    real: np.ndarray,
    geom: dict[str, int],
    zp_in: int,
    zp_out: int,
    lo: int,
    hi: int,
    out_shape: tuple[int, ...],
    direct_ok: bool,
) -> NativeCall:
    """divqat_conv_s8 for a [cout, K] weight matrix (OHWI rows) over K vectors described by `geom`."""
    cout, k = w2d.shape
    kp = _round_up(k, 8)
    rows = np.zeros((_round_up(cout, 4), kp), np.int8)  # zero rows up to a multiple of 4 (MVE reads 4 at a time)
    rows[:cout, :k] = w2d
    rows = chunk_rows(rows)
    b = _folded_bias(bias, w2d, zp_in, name)
    bound = np.abs(b) + np.abs(w2d.astype(np.int64)).sum(axis=1) * 128
    qp, fast = _requant_words(real, b, zp_out, lo, hi, bound)
    direct = direct_ok and geom["cin"] % 4 == 0
    flags = (FLAG_FAST if fast else 0) | (FLAG_DIRECT if direct else 0)
    desc = _desc(**geom, cout=cout, zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi, k=k, kp=kp, flags=flags)
    # DSP: a staged int8 K vector (KP) then the int16 column block of 4 pixels (8*KP); MVE and C: KP at most
    scratch = 9 * kp
    columns = "direct" if direct else ("im2col" if geom["cin"] % 4 == 0 else "im2col-bytes")
    return NativeCall(
        "divqat_conv_s8",
        [rows, _pad_channels(qp).reshape(-1), desc],
        scratch,
        out_shape,
        {"epilogue": "fast" if fast else "exact", "columns": columns, "k": k, "kp": kp},
    )


def _conv_geom(graph: Graph, op: Conv2D) -> tuple[np.ndarray, dict[str, int]] | None:
    """The conv's real multipliers and geometry (descriptor fields), or None when it is not a batch-1 NHWC conv."""
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    if ti.layout != "NHWC" or to.layout != "NHWC" or ti.shape[0] != 1:
        return None
    _, cin, ih, iw = ti.nchw()
    _, cout, oh, ow = to.nchw()
    kh, kw = int(op.weight.shape[2]), int(op.weight.shape[3])
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    geom = dict(
        ih=ih,
        iw=iw,
        cin=cin,
        oh=oh,
        ow=ow,
        kh=kh,
        kw=kw,
        sh=op.stride[0],
        sw=op.stride[1],
        dh=op.dilation[0],
        dw=op.dilation[1],
        pt=op.padding[0],
        pl=op.padding[1],
    )
    return real, geom


def _ohwi_rows(op: Conv2D) -> np.ndarray:
    """[cout, kh*kw*cin] weight rows in OHWI order (the K order of every conv kernel)."""
    return np.ascontiguousarray(op.weight.transpose(0, 2, 3, 1)).reshape(op.weight.shape[0], -1)


def conv_call(graph: Graph, op: Conv2D, scheme: str) -> NativeCall | None:
    """The native kernel for a conv, or None when it must stay on the TE path."""
    got = _conv_geom(graph, op) if scheme == "fixed" else None
    if got is None:
        return None
    real, geom = got
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    cin, cout, kh, kw = geom["cin"], to.nchw()[1], geom["kh"], geom["kw"]
    if op.groups == 1:
        direct = kh == 1 and kw == 1 and not any(op.padding)
        return _gemm_call(
            op.name,
            _ohwi_rows(op),
            op.bias,
            real,
            geom,
            ti.zero_point,
            to.zero_point,
            op.act_min,
            op.act_max,
            tuple(to.shape),
            direct,
        )
    if op.groups == cin == cout:
        return _dw_call(op, real, geom, ti.zero_point, to.zero_point, tuple(to.shape))
    return None


# ---------------------------------------------------------------- scratch-free conv (csrc/conv_rows_s8.c)
ROWS_CIN_MULTIPLE = 16  # whole 16-value vectors per tap (MVE), whole 4-quad steps (DSP)


def rows_weights(w2d: np.ndarray) -> np.ndarray:
    """[cout, K] OHWI rows in csrc/conv_rows_s8.c's int16 layout: zero rows up to a multiple of 4 channels; per
    group of 4 channels, per 4 K values, per channel (w0, w2, w1, w3). Flat int16."""
    cout, k = w2d.shape
    rows = np.zeros((_round_up(cout, 4), k), np.int16)
    rows[:cout] = w2d
    quads = rows.reshape(-1, 4, k // 4, 4)[..., [0, 2, 1, 3]]  # [group, channel, quad, w0 w2 w1 w3]
    return np.ascontiguousarray(quads.transpose(0, 2, 1, 3)).reshape(-1)


def rows_corrections(w2d: np.ndarray, taps: int, zp_in: int) -> np.ndarray:
    """[group, tap, 4 channels] int32: zp_in * sum over the tap's input channels of w, what a tap in the padding
    adds (the bias' assumes every tap inside). Flat int32."""
    cout, k = w2d.shape
    per_tap = np.zeros((_round_up(cout, 4), taps), np.int64)
    per_tap[:cout] = w2d.astype(np.int64).reshape(cout, taps, k // taps).sum(axis=2) * zp_in
    return np.ascontiguousarray(per_tap.reshape(-1, 4, taps).transpose(0, 2, 1)).reshape(-1).astype(np.int32)


def rows_call(graph: Graph, op: Conv2D, scheme: str) -> NativeCall | None:
    """divqat_conv_rows_s8 for a groups-1 conv that reads its input rows in place (no scratch), or None where that
    kernel does not apply: input channels not a multiple of 16, dilation, or an epilogue that is not the fast
    one."""
    got = _conv_geom(graph, op) if scheme == "fixed" and op.groups == 1 else None
    if got is None:
        return None
    real, geom = got
    if geom["cin"] % ROWS_CIN_MULTIPLE or geom["dh"] != 1 or geom["dw"] != 1:
        return None
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    w2d = _ohwi_rows(op)
    cout, k = w2d.shape
    b = _folded_bias(op.bias, w2d, ti.zero_point, op.name)
    bound = np.abs(b) + np.abs(w2d.astype(np.int64)).sum(axis=1) * 128  # padding terms included: |zp_in| <= 128
    qp, fast = _requant_words(real, b, to.zero_point, op.act_min, op.act_max, bound)
    if not fast:
        return None
    desc = _desc(
        **geom,
        cout=cout,
        zp_in=ti.zero_point,
        zp_out=to.zero_point,
        lo=op.act_min,
        hi=op.act_max,
        k=k,
        kp=k,
        flags=FLAG_FAST,
    )
    corr = rows_corrections(w2d, geom["kh"] * geom["kw"], ti.zero_point)
    return NativeCall(
        "divqat_conv_rows_s8",
        [rows_weights(w2d), _pad_channels(qp).reshape(-1), desc, corr],
        0,
        tuple(to.shape),
        {"epilogue": "fast", "columns": "rows (no scratch)", "k": k},
    )


# fused ADD words (csrc/conv_rows_s8.c, enum DF_*): two 256-entry stage tables, then the output stage
FUSED_ADD_WORDS = 2 * 256 + 6


def fused_add_words(tc: QTensor, tr: QTensor, to: QTensor, lo: int, hi: int) -> np.ndarray | None:
    """TFLite ADD(conv value, residual) as csrc/conv_rows_s8.c's DF_* words, or None where the kernel's output stage
    is not exact for it. Each input's stage MultiplyByQuantizedMultiplier((q - zp) << 20, M, shift) is tabulated for
    the 256 int8 q with the reference's own integer math (requant.multiply_by_quantized_multiplier); the output
    stage is the fast epilogue, which needs M > 2^30 and 1 <= shift <= 22 (as add_call) and |sum| < 2^30 (each
    stage is at most 255 * 2^19 in magnitude)."""
    twice_max = 2.0 * max(tc.scale, tr.scale)
    q = np.arange(-128, 128, dtype=np.int64)
    tables = []
    for t in (tc, tr):
        m, sh = rq.quantize_multiplier(t.scale / twice_max)
        tables.append(rq.multiply_by_quantized_multiplier((q - t.zero_point) << rq.ADD_LEFT_SHIFT, m, sh))
    mo, so = rq.quantize_multiplier(twice_max / ((1 << rq.ADD_LEFT_SHIFT) * to.scale))
    ao = -int(so)
    if not (mo > (1 << 30) and 1 <= ao <= FAST_MAX_SHIFT):
        return None
    if max(int(np.abs(t).max()) for t in tables) * 2 >= ACC_LIMIT:
        return None
    tail = [int(mo), ao, (1 << (ao - 1)) + (to.zero_point << ao), lo, hi, to.zero_point]
    return np.concatenate([*tables, np.array(tail, np.int64)]).astype(np.int32)


def fused_call(graph: Graph, op: Conv2D, scheme: str) -> NativeCall | None:
    """divqat_conv_rows_add_s8 for a fuse.ConvAdd (the conv by rows, its ADD applied per element and written over
    the residual's index), or None where either part is not exact on that kernel."""
    conv = op.conv()  # type: ignore[attr-defined]  # fuse.ConvAdd (native cannot import fuse: fuse imports native)
    call = rows_call(graph, conv, scheme)
    if call is None:
        return None
    tc, tr, to = (graph.tensors[n] for n in (op.mid, op.inputs[1], op.output))  # type: ignore[attr-defined]
    if tr.layout != "NHWC" or to.layout != "NHWC" or tr.shape != tc.shape or to.shape != tc.shape:
        return None
    df = fused_add_words(tc, tr, to, op.add_act_min, op.add_act_max)  # type: ignore[attr-defined]
    if df is None:
        return None
    return NativeCall(
        "divqat_conv_rows_add_s8",
        [*call.consts, df],
        0,
        tuple(to.shape),
        {**call.variant, "fused": f"ADD {op.add_name}"},  # type: ignore[attr-defined]
        inputs=(0, 1),
    )


DW_MAX_KH, DW_MAX_ROWS = 8, 16  # csrc/dwconv_s8.c: DIVQAT_DW_MAX_KH, DIVQAT_DW_MAX_ROWS


def _dw_pair_ok(geom: dict[str, int]) -> bool:
    """The tap-pair path's shapes: 3x3, dilation 1, stride 1 or 2 across (any stride down)."""
    return (geom["kh"], geom["kw"], geom["dh"], geom["dw"]) == (3, 3, 1, 1) and geom["sw"] in (1, 2)


FLAG_DWPLANE = 32  # csrc/dwconv_s8.c: DIVQAT_DW_PLANE, the whole-plane tap-pair path


def _dw_plane_ok(geom: dict[str, int]) -> bool:
    """The whole-plane tap-pair path's shapes (small planes, where the ring's fixed costs dominate): stride 2 both
    ways, no top or left padding, an even input width whose last output pixel reads the right pad (iw = 2 ow),
    2-4 pixels a row, and no window row below the bottom pad row."""
    g = geom
    return (
        _dw_pair_ok(g)
        and g["sh"] == g["sw"] == 2
        and g["pt"] == g["pl"] == 0
        and g["iw"] == 2 * g["ow"]
        and 2 <= g["ow"] <= 4
        and 2 * g["oh"] <= g["ih"]
    )


DW_PAIR_STREAM = 10  # csrc/dwconv_s8.c: DIVQAT_DWP_STREAM, int32 words per channel
DW_MVE_ROWS = 4  # csrc/dwconv_s8.c's Helium tap-pair kernel: 3 ring rows and a row of zeros


def _dw_mve_scratch(geom: dict[str, int]) -> int:
    """Bytes the Helium tap-pair kernel (Cortex-M55) needs: DW_MVE_ROWS rows of the padded width, 4 int16 (one
    channel group) a column. The scratch is the larger of this and the DSP path's (one kernels.c for every core)."""
    wc = max((geom["ow"] - 1) * geom["sw"] + 3, geom["pl"] + geom["iw"])
    return DW_MVE_ROWS * 8 * wc * ((geom["cin"] + 3) // 4)


def dw_pair_stream(w: np.ndarray, qp: np.ndarray) -> np.ndarray:
    """[C, 9] taps (row-major 3x3, already doubled) and [C, 4] requant words (doubled bias', M, a, b) as
    csrc/dwconv_s8.c's per-channel tap-pair stream: bias', per kernel row the int16 pairs (w0, w1) and (w2, 0), then
    M, a, b — the order the channel loop reads them with one pointer. Flat int16 (the kernel's weight argument),
    DW_PAIR_STREAM int32 words per channel."""
    c = w.shape[0]
    taps = np.zeros((c, 3, 4), np.int64)
    taps[:, :, 0:3] = w.reshape(c, 3, 3)
    pairs = taps.astype("<i2").view("<u4").reshape(c, 6).astype(np.int64)  # little-endian int16 pairs
    pairs = np.where(pairs >= 2**31, pairs - 2**32, pairs)
    stream = np.concatenate([qp[:, :1], pairs, qp[:, 1:4]], axis=1).astype("<i4")
    assert stream.shape == (c, DW_PAIR_STREAM)
    return stream.reshape(-1).view("<i2").astype(np.int16)


def _dw_call(
    op: Conv2D, real: np.ndarray, geom: dict[str, int], zp_in: int, zp_out: int, out_shape: tuple[int, ...]
) -> NativeCall | None:
    """divqat_dwconv_s8 for a depthwise conv with depth multiplier 1: the tap-pair path (any C) for 3x3 layers
    with the fast epilogue, else the 4-channel-group ring (C % 4 == 0); divqat_dwconv_plane_s8 for the tap-pair
    layers `_dw_plane_ok` accepts."""
    c, kh, kw = geom["cin"], geom["kh"], geom["kw"]
    nrows = (kh - 1) * geom["dh"] + 1
    if kh > DW_MAX_KH or nrows > DW_MAX_ROWS:
        return None
    w = op.weight.reshape(c, kh * kw).astype(np.int64)  # [C, 1, KH, KW] -> [C, taps]
    bias = op.bias.astype(np.int64)  # the kernel subtracts zp_in while widening: no fold
    span = max(127 - zp_in, zp_in + 128)
    bound = np.abs(bias) + np.abs(w).sum(axis=1) * span
    qp, fast = _requant_words(real, bias, zp_out, op.act_min, op.act_max, bound)
    pair = fast and _dw_pair_ok(geom)
    if not pair and c % 4:
        return None
    scale = 2 if fast else 1  # the fast epilogue takes the doubled accumulator
    qp[:, 0] *= scale
    desc_kw = dict(**geom, cout=c, zp_in=zp_in, zp_out=zp_out, lo=op.act_min, hi=op.act_max, k=kh * kw, kp=0)
    if pair and _dw_plane_ok(geom):
        hw, rows = geom["iw"] // 2, geom["ih"]
        return NativeCall(
            "divqat_dwconv_plane_s8",  # its own entry: the plane path's code is pasted only into models that use it
            [
                dw_pair_stream(w * scale, qp),
                np.zeros(1, np.int32),
                _desc(**desc_kw, flags=FLAG_FAST | FLAG_DWPAIR | FLAG_DWPLANE),
            ],
            max(4 * c * hw * rows, _dw_mve_scratch(geom)),
            out_shape,
            {"epilogue": "fast", "ring": "tap pairs, whole plane", "ring_rows": rows},
        )
    if pair:
        nw = (geom["ow"] + 3) // 2 if geom["sw"] == 1 else geom["ow"] + 1  # ring words per channel
        return NativeCall(
            "divqat_dwconv_s8",  # its constants all in the stream: the qp argument is one unused word
            [dw_pair_stream(w * scale, qp), np.zeros(1, np.int32), _desc(**desc_kw, flags=FLAG_FAST | FLAG_DWPAIR)],
            max(4 * c * nw * 4, _dw_mve_scratch(geom)),
            out_shape,
            {"epilogue": "fast", "ring": "tap pairs", "ring_rows": 3},
        )
    # per 4-channel group, per tap: int16 (c0, c2, c1, c3), the order SXTAB16 leaves the input in
    wt = (w * scale).reshape(c // 4, 4, kh * kw)[:, [0, 2, 1, 3], :].transpose(0, 2, 1).astype(np.int16)  # [G, taps, 4]
    need = (geom["ow"] - 1) * geom["sw"] + (kw - 1) * geom["dw"] + 1
    wc = max(need, geom["pl"] + geom["iw"])
    scratch = (nrows + 1) * wc * c * 2
    return NativeCall(
        "divqat_dwconv_s8",
        [wt.reshape(-1), qp.reshape(-1), _desc(**desc_kw, flags=FLAG_FAST if fast else 0)],
        scratch,
        out_shape,
        {"epilogue": "fast" if fast else "exact", "ring": "channel groups", "ring_rows": nrows},
    )


def round_half_away_f64(acc: int, scale: float) -> int:
    """LiteRT's reference FULLY_CONNECTED rounding of one accumulator: round(double(acc) · scale), half away from
    zero, with the same double operations as csrc/divqat_nn.h's DQ_F64 path (Python floats are IEEE doubles)."""
    v = float(acc) * scale
    t = float(math.trunc(v))
    f = v - t
    return int(t + (1.0 if f >= 0.5 else (-1.0 if f <= -0.5 else 0.0)))


def _f64_thresholds(scale: float, n_max: int) -> list[int] | None:
    """T(n), n = 1..n_max: the least acc >= 0 whose double rounding is >= n, i.e. double(acc·scale) >= n − 0.5
    (the multiply is monotone, so T is found next to the exact rational bound). None when the search fails."""
    out = []
    exact = Fraction(scale)
    for n in range(1, n_max + 1):
        a = max(0, math.ceil((Fraction(2 * n - 1, 2)) / exact) - 3)
        for _ in range(8):
            if float(a) * scale >= n - 0.5:
                break
            a += 1
        else:
            return None
        if a > 0 and float(a - 1) * scale >= n - 0.5:
            return None  # not the least: the search window was wrong
        out.append(a)
    return out


def f64_as_fixed(scale: float, n_max: int) -> tuple[int, int] | None:
    """An unsigned 32-bit multiplier M and shift S (32 <= S <= 63) with
    sign(acc) · ((|acc|·M + 2^(S−1)) >> S) == round_half_away_f64(acc, scale) for every int32 acc whose rounded
    magnitude is at most n_max (beyond it both sides saturate the same clamp, being monotone), or None.

    Proof, not sampling: both sides are odd (the double multiply and the rounding are symmetric) and, on acc >= 0,
    non-decreasing integer step functions that are 0 at 0, so they are equal up to n_max exactly when their
    thresholds T(n) (the least acc reaching n) agree for n = 1..n_max: the integer side's is
    ceil((2n − 1)·2^(S−1) / M), the double side's is found by evaluating the double rounding itself."""
    if not (0.0 < scale < 1.0) or not math.isfinite(scale):
        return None
    want = _f64_thresholds(scale, n_max)
    if want is None:
        return None
    exact = Fraction(scale)
    e = 0
    while exact * 2 ** (32 + e + 1) < 2**32 and e < 31:
        e += 1  # the largest S = 32 + e with scale·2^S < 2^32: the most precise M
    for s in range(32 + e, 31, -1):
        base = exact * 2**s
        for m in (round(base), math.floor(base), math.ceil(base)):
            if not 0 < m < 2**32:
                continue
            if all(-(-((2 * n - 1) << (s - 1)) // m) == t for n, t in enumerate(want, 1)):
                return m, s
    return None


def dense_call(graph: Graph, op: Dense, scheme: str) -> NativeCall | None:
    """A fully connected layer as the GEMM kernel over one 1x1 'pixel': the fixed-point epilogue, or for TFLite's
    FULLY_CONNECTED (`effective_scales`) LiteRT's reference double rounding (DQ_F64)."""
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    if scheme != "fixed" or len(ti.shape) != 2 or ti.shape[0] != 1:
        return None
    f64 = hasattr(op, "effective_scales")
    if hasattr(op, "te_kernel") and not f64:
        return None
    cout, k = op.weight.shape
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    geom = dict(ih=1, iw=1, cin=k, oh=1, ow=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, pt=0, pl=0)
    call = _gemm_call(
        op.name,
        op.weight,
        op.bias,
        real,
        geom,
        ti.zero_point,
        to.zero_point,
        op.act_min,
        op.act_max,
        tuple(to.shape),
        True,
    )
    if f64:
        scales = op.effective_scales(graph)  # type: ignore[attr-defined]  # TFLite's FC (tflite_ops) has them
        call = _f64_epilogue(call, scales, cout, to.zero_point, op.act_min, op.act_max)
    return call


def _f64_epilogue(call: NativeCall, scales: np.ndarray, cout: int, zp_out: int, lo: int, hi: int) -> NativeCall:
    """LiteRT's double rounding for a FULLY_CONNECTED: as a proven integer multiplier and shift (DQ_HAWAY:
    [bias', M, S − 32, 0]) when `f64_as_fixed` proves it equal for every scale of the layer, else the double
    computation itself (DQ_F64: [bias', float64 scale as (low, high) words, 0])."""
    qp = call.consts[1].reshape(-1, QP_WORDS).copy()
    n_max = max(hi - zp_out, zp_out - lo) + 1  # past this magnitude both sides clamp alike
    fixed = [f64_as_fixed(float(sc), n_max) for sc in np.asarray(scales, np.float64)]
    if all(f is not None for f in fixed):
        words = np.array([[m, s - 32] for m, s in fixed], dtype=np.int64)  # type: ignore[misc]
        words[:, 0] = np.where(words[:, 0] >= 2**31, words[:, 0] - 2**32, words[:, 0])  # M's bits as int32
        flag, epilogue = FLAG_HAWAY, "LiteRT FULLY_CONNECTED rounding as a proven 32-bit multiplier and shift"
    else:
        words = np.asarray(scales, "<f8").view("<i4").reshape(-1, 2).astype(np.int64)
        flag, epilogue = FLAG_F64, "float64 rounding (LiteRT reference FULLY_CONNECTED)"
    qp[:cout, 1:3] = words
    qp[cout:, 1:3] = words[-1]
    qp[:, 3] = 0
    desc = call.consts[2].copy()
    desc[DESC_FIELDS.index("flags")] = (desc[DESC_FIELDS.index("flags")] & ~FLAG_FAST) | flag
    return NativeCall(
        call.function,
        [call.consts[0], qp.reshape(-1), desc],
        call.scratch_bytes,
        call.out_shape,
        {**call.variant, "epilogue": epilogue},
    )


def add_call(graph: Graph, op: Add, scheme: str) -> NativeCall | None:
    """TFLite's int8 ADD (the "fixed" scheme's add, kernels.add) as divqat_add_s8, elementwise over any layout.
    The input with the larger scale goes first (its stage is an exact shift, see csrc/add_s8.c)."""
    ta, tb, to = (graph.tensors[n] for n in (*op.inputs[:2], op.output))
    if scheme != "fixed" or ta.shape != to.shape or tb.shape != to.shape:
        return None
    order = (0, 1) if ta.scale >= tb.scale else (1, 0)
    if order == (1, 0):
        ta, tb = tb, ta
    twice_max = 2.0 * max(ta.scale, tb.scale)
    ma, sa = rq.quantize_multiplier(ta.scale / twice_max)
    mb, sb = rq.quantize_multiplier(tb.scale / twice_max)
    mo, so = rq.quantize_multiplier(twice_max / ((1 << rq.ADD_LEFT_SHIFT) * to.scale))
    b_half = (mb, sb) == (1 << 30, 0)
    if (ma, sa) != (1 << 30, 0) or not (b_half or (sb < 0 and mb >= (1 << 30))):
        return None  # not the arithmetic the kernel assumes: the TE kernel handles it
    rb = -sb
    ao = -so
    fast = mo > (1 << 30) and 1 <= ao <= FAST_MAX_SHIFT
    full = (op.act_min, op.act_max) == (-128, 127)
    bo = ((1 << (ao - 1)) + (to.zero_point << ao)) if fast else 0
    flags = (1 if fast else 0) | (2 if b_half else 0) | (4 if full else 0)
    desc = np.array(
        [
            to.nbytes,
            ta.zero_point,
            tb.zero_point,
            to.zero_point,
            op.act_min,
            op.act_max,
            mb,
            rb,
            (1 << (rb - 1)) if rb else 0,
            mo,
            ao,
            bo,
            flags,
        ],
        dtype=np.int32,
    )
    return NativeCall(
        "divqat_add_s8", [desc], 0, tuple(to.shape), {"epilogue": "fast" if fast else "exact"}, inputs=order
    )


def select(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    """The native kernel call for `op`, or None (the op keeps its TE kernel)."""
    if isinstance(op, Conv2D) and op.kind == "conv2d_add":  # fuse.ConvAdd
        return fused_call(graph, op, scheme)
    if isinstance(op, Conv2D):
        return conv_call(graph, op, scheme)
    if isinstance(op, Dense):
        return dense_call(graph, op, scheme)
    if isinstance(op, Add) and not hasattr(op, "te_kernel"):
        return add_call(graph, op, scheme)
    return None


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


_BLOCKS = {
    "divqat_conv_s8": {
        "dsp": "1 channel x 4 pixels (SMLAD, int16 columns); one pixel: 4 channels x 1 pixel",
        "mve": "4 channels x 2 pixels (VMLADAVA); one pixel: 4 channels x 1 pixel",
        "c": "1 channel x 1 pixel (C)",
    },
    "divqat_conv_rows_s8": {
        "dsp": "1 pixel x 4 channels (SMLAD on input words widened in registers, int16 weights)",
        "mve": "2 pixels x 4 channels (VMLADAVA, weights by byte gather)",
        "c": "1 pixel x 4 channels (C)",
    },
    "divqat_add_s8": {"dsp": "1 element (SMMLAR)", "mve": "4 elements (VQRDMULH, VRSHL)", "c": "1 element (C)"},
    "divqat_dwconv_s8": {
        "dsp": "tap pairs: 1 channel x 1-6 pixels (SMLAD + SMLABB); else 4 channels x 2 pixels (SMLABB/SMLATT)",
        "mve": "tap pairs: 4 channels x 1-5 pixels (Helium: VLDRH.S32, VMUL, VADD; VRMULH epilogue); else 4"
        " channels x 2 pixels (SMLABB/SMLATT)",
        "c": "tap pairs or 4-channel groups over int16 ring rows (C twins of the DSP instructions)",
    },
    "divqat_dwconv_plane_s8": {
        "dsp": "tap pairs, the plane widened whole: 1 channel x one output row of 2-4 pixels (SMLAD + SMLABB)",
        "mve": "tap pairs: 4 channels x 2-4 pixels (Helium: VLDRH.S32, VMUL, VADD; VRMULH epilogue)",
        "c": "tap pairs over the plane widened whole (C twins of the DSP instructions)",
    },
}


_BLOCK_OF = {"divqat_conv_rows_add_s8": "divqat_conv_rows_s8"}


def manifest_entry(call: NativeCall | None, core: str | None) -> dict[str, Any]:
    """The manifest's `ops[].kernel` for a native call, or for a TVM-generated kernel (None)."""
    if call is None:
        return {"name": "tvm", "variant": {"source": "TE kernel scheduled by TVM (kernels.py)"}}
    path = kernel_path(core)
    block = _BLOCKS[_BLOCK_OF.get(call.function, call.function)].get(path, "chosen when compiled")
    return {
        "name": call.function,
        "variant": {"path": path, "block": block, **call.variant},
        "scratch_bytes": call.scratch_bytes,
    }


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
