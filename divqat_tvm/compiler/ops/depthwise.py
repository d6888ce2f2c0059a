"""Depthwise convolution (one input channel per output channel): its hand-written kernel csrc/dwconv_s8.c with
the constants' re-layout (the tap-pair stream, the 4-channel groups) and the choice between its paths. Its TE
kernel and numpy reference are the grouped conv's (ops/conv.py), the same integers for any group count.
"""

from __future__ import annotations

import numpy as np

from divqat_tvm.compiler import native
from divqat_tvm.compiler.graph import Conv2D, Graph, Op
from divqat_tvm.compiler.native import NativeCall
from divqat_tvm.compiler.ops import common as C
from divqat_tvm.compiler.ops import conv


def claims(op: Op) -> bool:
    return isinstance(op, Conv2D) and conv.is_depthwise(op)


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    """The grouped conv's TE kernel (groups = channels)."""
    return conv.te_kernel(graph, op, scheme)


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    """The grouped conv's reference (groups = channels)."""
    return conv.reference(graph, op, inputs, scheme)


def native_call(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    """divqat_dwconv_s8 for a batch-1 NHWC depthwise conv under "fixed", or None (its TE kernel)."""
    assert isinstance(op, Conv2D)
    got = conv.conv_geom(graph, op) if scheme == "fixed" else None
    if got is None:
        return None
    real, geom = got
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    return _dw_call(op, real, geom, ti.zero_point, to.zero_point, tuple(to.shape))


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
    qp, fast = native.requant_words(real, bias, zp_out, op.act_min, op.act_max, bound)
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
                native.desc(**desc_kw, flags=native.FLAG_FAST | native.FLAG_DWPAIR | FLAG_DWPLANE),
            ],
            max(4 * c * hw * rows, _dw_mve_scratch(geom)),
            out_shape,
            {"epilogue": "fast", "ring": "tap pairs, whole plane", "ring_rows": rows},
        )
    if pair:
        nw = (geom["ow"] + 3) // 2 if geom["sw"] == 1 else geom["ow"] + 1  # ring words per channel
        return NativeCall(
            "divqat_dwconv_s8",  # its constants all in the stream: the qp argument is one unused word
            [
                dw_pair_stream(w * scale, qp),
                np.zeros(1, np.int32),
                native.desc(**desc_kw, flags=native.FLAG_FAST | native.FLAG_DWPAIR),
            ],
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
        [wt.reshape(-1), qp.reshape(-1), native.desc(**desc_kw, flags=native.FLAG_FAST if fast else 0)],
        scratch,
        out_shape,
        {"epilogue": "fast" if fast else "exact", "ring": "channel groups", "ring_rows": nrows},
    )


BLOCKS = {
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
