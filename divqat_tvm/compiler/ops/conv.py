"""Convolution (groups 1 and grouped, not depthwise): its TE kernel, its numpy reference, its hand-written kernels
(csrc/conv_s8.c's blocked GEMM, csrc/conv_rows_s8.c's scratch-free rows) and their constants' re-layout, the
schedules `--tune` chooses among, and the conv fused with the residual ADD after it (`ConvAdd`).

The TE kernel reduces over the in-bounds kernel taps only and subtracts the zero point per product, so no padding
is read or tested; the reference pads and sums the plain way; the C kernels fold the zero point into the bias.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tvm import te, tirx

from divqat_tvm.compiler import native
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import Add, Conv2D, Dense, Graph, Op, QTensor
from divqat_tvm.compiler.native import NativeCall
from divqat_tvm.compiler.ops import common as C
from divqat_tvm.compiler.ops import elementwise

# C helper Σ (x[i] − zp)·w[i] over n contiguous int8 pairs (csrc/dot_s8.c, pasted into kernels.c by lower.py where
# a kernel calls it: VMLADAVA with Helium, SMLAD with the DSP extension, a plain loop elsewhere). The TE conv calls
# it once per kernel row of an NHWC groups-1 layer.
DOT_S8 = "divqat_dot_s8"


def _taps(o, stride: int, dil: int, pad: int, k: int, n_in: int, name: str):
    """The reduction axis over the kernel taps t that land inside the input for output index o:
    0 <= o·stride + t·dil − pad < n_in, i.e. t in [ceil((pad − o·stride)/dil), ceil((n_in + pad − o·stride)/dil))
    clipped to [0, k). Bounds instead of a padding test on every multiply-accumulate."""
    a = pad - o * stride
    lo = tirx.max(0, a if dil == 1 else tirx.floordiv(a + dil - 1, dil))
    hi = tirx.min(k, n_in + a if dil == 1 else tirx.floordiv(n_in + a + dil - 1, dil))
    return te.reduce_axis((lo, hi), name)


def conv2d(
    x,
    w,
    bias,
    p0,
    *p1,
    layout: str,
    in_nchw: tuple[int, int, int, int],
    out_nchw: tuple[int, int, int, int],
    stride,
    padding,
    dilation,
    groups: int,
    zp_in: int,
    r: C.Requant,
):
    """Grouped/depthwise int8 conv; weights in OHWI order [cout, kh, kw, cin/groups] so the innermost loop
    (input channels) reads both operands contiguously. (p0, p1) are the int32 (multiplier, shift) arrays for
    "fixed"; p0 is the float32 per-channel scale for "float" (no p1). `bias` is the model's own bias.

    Padding is never read: the kernel-window reduction runs over the in-bounds taps only (`_taps`), and each
    product is (x − zp_in)·w, so a padded tap (which would read zp_in) contributes exactly the 0 it would have
    contributed; integer sums are exact, so the result is bit-identical to summing over padded input."""
    n, cin, ih, iw = in_nchw
    _, cout, oh, ow = out_nchw
    _, kh, kw, ig = (int(d) for d in w.shape)
    og = cout // groups
    pt, pl = padding[0], padding[1]
    sh, sw = stride
    dh, dw = dilation

    def acc_nchw(b, k, yy, xx):
        ry = _taps(yy, sh, dh, pt, kh, ih, "ry")
        rx = _taps(xx, sw, dw, pl, kw, iw, "rx")
        # A window-dependent extent (always ig: yy >= 0) keeps rc in the same nest as ry/rx, so the
        # schedule can run it innermost; a constant extent would be hoisted outside the window loops.
        rc = te.reduce_axis((0, ig + tirx.min(yy, 0)), "rc")
        c = (k // og) * ig + rc
        v = x[C.layout_index(layout, b, c, yy * sh + ry * dh - pt, xx * sw + rx * dw - pl)].astype("int32") - zp_in
        return te.sum(v * w[k, ry, rx, rc].astype("int32"), axis=[ry, rx, rc])

    def acc_rows(b, yy, xx, k):  # NHWC, groups 1, no horizontal dilation: each kernel row is one contiguous run
        ry = _taps(yy, sh, dh, pt, kh, ih, "ry")
        rx0, rx1 = tirx.max(0, pl - xx * sw), tirx.min(kw, iw + pl - xx * sw)
        xs = x(b, yy * sh + ry * dh - pt, xx * sw + rx0 - pl, 0)
        ws = w(k, ry, rx0, 0)
        return te.sum(
            tirx.call_extern(
                "int32",
                DOT_S8,
                tirx.call_intrin("handle", "tirx.address_of", xs),
                tirx.call_intrin("handle", "tirx.address_of", ws),
                tirx.Cast("int32", (rx1 - rx0) * ig),
                zp_in,
            ),
            axis=[ry],
        )

    if layout == "NCHW":
        acc = te.compute((n, cout, oh, ow), acc_nchw, name="acc")
    elif groups == 1 and dw == 1:
        acc = te.compute((n, oh, ow, cout), acc_rows, name="acc")
    else:
        acc = te.compute((n, oh, ow, cout), lambda b, yy, xx, k: acc_nchw(b, k, yy, xx), name="acc")

    shape = (n, cout, oh, ow) if layout == "NCHW" else (n, oh, ow, cout)
    ch = (lambda i: i[1]) if layout == "NCHW" else (lambda i: i[3])

    def pre(*i):
        return acc[i] + bias[ch(i)]

    return C.requant_out(
        shape, pre, r, m_of=lambda i: p0[ch(i)], shift_of=lambda i: p1[0][ch(i)], scale_of=lambda i: p0[ch(i)]
    )


def claims(op: Op) -> bool:
    """Every conv but the depthwise ones (ops/depthwise.py)."""
    return isinstance(op, Conv2D) and not is_depthwise(op)


def is_depthwise(op: Conv2D) -> bool:
    """One input channel per output channel (depth multiplier 1)."""
    return type(op) is Conv2D and op.groups > 1 and op.groups == op.weight.shape[0] and op.weight.shape[1] == 1


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    """The conv's TE kernel: OHWI weights (the inner loop runs over input channels) and the model's own bias (the
    kernel subtracts the input zero point per product; see conv2d)."""
    if isinstance(op, ConvAdd):
        return op.te_kernel(graph, scheme)
    assert isinstance(op, Conv2D)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    consts: list[np.ndarray] = [
        np.ascontiguousarray(op.weight.astype(np.int8).transpose(0, 2, 3, 1)),
        op.bias.astype(np.int32),
        *C.requant_arrays(op, ti.scale, to.scale, scheme),
    ]
    return conv2d, consts, _conv_params(ti, to, op, scheme)


def _conv_params(ti: QTensor, to: QTensor, op: Conv2D, scheme: str) -> dict[str, Any]:
    return dict(
        layout=ti.layout,
        in_nchw=ti.nchw(),
        out_nchw=to.nchw(),
        stride=op.stride,
        padding=op.padding,
        dilation=op.dilation,
        groups=op.groups,
        zp_in=ti.zero_point,
        r=C.Requant(scheme, to.zero_point, op.act_min, op.act_max),
    )


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    """The conv the plain way: the input minus its zero point, padded with real zeros, every window summed."""
    if isinstance(op, ConvAdd):
        return op.reference(graph, inputs, scheme)
    assert isinstance(op, Conv2D)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = C.to_nchw(ti, np.asarray(inputs[0])).astype(np.int64) - ti.zero_point
    pt, pl, pb, pr = op.padding
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = op.weight.astype(np.int64)
    o, ig, kh, kw = w.shape
    dh, dw = op.dilation
    sh, sw = op.stride
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # N, C, OH, OW, KH, KW
    og = o // op.groups
    outs = []
    for g in range(op.groups):
        xg = win[:, g * ig : (g + 1) * ig]
        wg = w[g * og : (g + 1) * og]
        # float64 products and sums of int8 values are exact far beyond any int32 accumulator (< 2^53),
        # and tensordot reaches BLAS: the same integers, much faster than an int64 einsum.
        acc_g = np.tensordot(xg.astype(np.float64), wg.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
        outs.append(np.rint(acc_g).astype(np.int64).transpose(0, 3, 1, 2))
    acc = np.concatenate(outs, axis=1) + op.bias.astype(np.int64).reshape(1, -1, 1, 1)
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    y = C.requant_ref(
        acc, real, rq.conv_scale_f32(ti.scale, op.weight_scale, to.scale), to.zero_point, op.act_min, op.act_max, scheme
    )
    return C.from_nchw(to, y)


# ---------------------------------------------------------------- csrc/conv_s8.c: the blocked GEMM
def chunk_rows(rows: np.ndarray) -> np.ndarray:
    """[C4, KP] weight rows (C4 a multiple of 4) in csrc/conv_s8.c's order: zero-padded to a multiple of 16
    values, each group of 4 rows interleaved in 16-byte chunks ([c0 k0..15][c1 k0..15][c2 ..][c3 ..][c0
    k16..31]...). Flat int8."""
    c4, kp = rows.shape
    k16 = native.round_up(kp, 16)
    padded = np.zeros((c4, k16), np.int8)
    padded[:, :kp] = rows
    g = padded.reshape(c4 // 4, 4, k16 // 16, 16).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(g.reshape(-1))


def gemm_call(
    graph: Graph, op: Conv2D | Dense, w2d: np.ndarray, real: np.ndarray, geom: dict[str, int], direct_ok: bool
) -> NativeCall:
    """divqat_conv_s8 for the op's [cout, K] weight matrix `w2d` (OHWI rows) over K vectors described by `geom`."""
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    zp_in, zp_out, lo, hi = ti.zero_point, to.zero_point, op.act_min, op.act_max
    cout, k = w2d.shape
    kp = native.round_up(k, 8)
    rows = np.zeros((native.round_up(cout, 4), kp), np.int8)  # zero rows up to a multiple of 4 (MVE reads 4 at a time)
    rows[:cout, :k] = w2d
    rows = chunk_rows(rows)
    b = C.folded_bias(op.bias, w2d, zp_in, op.name)
    bound = np.abs(b) + np.abs(w2d.astype(np.int64)).sum(axis=1) * 128
    qp, fast = native.requant_words(real, b, zp_out, lo, hi, bound)
    direct = direct_ok and geom["cin"] % 4 == 0
    flags = (native.FLAG_FAST if fast else 0) | (native.FLAG_DIRECT if direct else 0)
    desc = native.desc(**geom, cout=cout, zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi, k=k, kp=kp, flags=flags)
    # DSP: a staged int8 K vector (KP) then the int16 column block of 4 pixels (8*KP); MVE and C: KP at most
    scratch = 9 * kp
    columns = "direct" if direct else ("im2col" if geom["cin"] % 4 == 0 else "im2col-bytes")
    return NativeCall(
        "divqat_conv_s8",
        [rows, native.pad_channels(qp).reshape(-1), desc],
        scratch,
        tuple(to.shape),
        {"epilogue": "fast" if fast else "exact", "columns": columns, "k": k, "kp": kp},
    )


def conv_geom(graph: Graph, op: Conv2D) -> tuple[np.ndarray, dict[str, int]] | None:
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
    """csrc/conv_s8.c for a groups-1 conv, or None when it must stay on the TE path (a grouped conv, NCHW,
    batch > 1, the "float" scheme)."""
    got = conv_geom(graph, op) if scheme == "fixed" and op.groups == 1 else None
    if got is None:
        return None
    real, geom = got
    direct = geom["kh"] == 1 and geom["kw"] == 1 and not any(op.padding)
    return gemm_call(graph, op, _ohwi_rows(op), real, geom, direct)


# ---------------------------------------------------------------- csrc/conv_rows_s8.c: the scratch-free conv
ROWS_CIN_MULTIPLE = 16  # whole 16-value vectors per tap (MVE), whole 4-quad steps (DSP)


def rows_weights(w2d: np.ndarray) -> np.ndarray:
    """[cout, K] OHWI rows in csrc/conv_rows_s8.c's int16 layout: zero rows up to a multiple of 4 channels; per
    group of 4 channels, per 4 K values, per channel (w0, w2, w1, w3). Flat int16."""
    cout, k = w2d.shape
    rows = np.zeros((native.round_up(cout, 4), k), np.int16)
    rows[:cout] = w2d
    quads = rows.reshape(-1, 4, k // 4, 4)[..., [0, 2, 1, 3]]  # [group, channel, quad, w0 w2 w1 w3]
    return np.ascontiguousarray(quads.transpose(0, 2, 1, 3)).reshape(-1)


def rows_corrections(w2d: np.ndarray, taps: int, zp_in: int) -> np.ndarray:
    """[group, tap, 4 channels] int32: zp_in * sum over the tap's input channels of w, what a tap in the padding
    adds (the bias' assumes every tap inside). Flat int32."""
    cout, k = w2d.shape
    per_tap = np.zeros((native.round_up(cout, 4), taps), np.int64)
    per_tap[:cout] = w2d.astype(np.int64).reshape(cout, taps, k // taps).sum(axis=2) * zp_in
    return np.ascontiguousarray(per_tap.reshape(-1, 4, taps).transpose(0, 2, 1)).reshape(-1).astype(np.int32)


def rows_call(graph: Graph, op: Conv2D, scheme: str) -> NativeCall | None:
    """divqat_conv_rows_s8 for a groups-1 conv that reads its input rows in place (no scratch), or None where that
    kernel does not apply: input channels not a multiple of 16, dilation, or an epilogue that is not the fast
    one."""
    got = conv_geom(graph, op) if scheme == "fixed" and op.groups == 1 else None
    if got is None:
        return None
    real, geom = got
    if geom["cin"] % ROWS_CIN_MULTIPLE or geom["dh"] != 1 or geom["dw"] != 1:
        return None
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    w2d = _ohwi_rows(op)
    cout, k = w2d.shape
    b = C.folded_bias(op.bias, w2d, ti.zero_point, op.name)
    bound = np.abs(b) + np.abs(w2d.astype(np.int64)).sum(axis=1) * 128  # padding terms included: |zp_in| <= 128
    qp, fast = native.requant_words(real, b, to.zero_point, op.act_min, op.act_max, bound)
    if not fast:
        return None
    desc = native.desc(
        **geom,
        cout=cout,
        zp_in=ti.zero_point,
        zp_out=to.zero_point,
        lo=op.act_min,
        hi=op.act_max,
        k=k,
        kp=k,
        flags=native.FLAG_FAST,
    )
    corr = rows_corrections(w2d, geom["kh"] * geom["kw"], ti.zero_point)
    return NativeCall(
        "divqat_conv_rows_s8",
        [rows_weights(w2d), native.pad_channels(qp).reshape(-1), desc, corr],
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
    if not (mo > (1 << 30) and 1 <= ao <= native.FAST_MAX_SHIFT):
        return None
    if max(int(np.abs(t).max()) for t in tables) * 2 >= native.ACC_LIMIT:
        return None
    tail = [int(mo), ao, (1 << (ao - 1)) + (to.zero_point << ao), lo, hi, to.zero_point]
    return np.concatenate([*tables, np.array(tail, np.int64)]).astype(np.int32)


def fused_call(graph: Graph, op: ConvAdd, scheme: str) -> NativeCall | None:
    """divqat_conv_rows_add_s8 for a ConvAdd (the conv by rows, its ADD applied per element and written over the
    residual's index), or None where either part is not exact on that kernel."""
    call = rows_call(graph, op.conv(), scheme)
    if call is None:
        return None
    tc, tr, to = (graph.tensors[n] for n in (op.mid, op.inputs[1], op.output))
    if tr.layout != "NHWC" or to.layout != "NHWC" or tr.shape != tc.shape or to.shape != tc.shape:
        return None
    df = fused_add_words(tc, tr, to, op.add_act_min, op.add_act_max)
    if df is None:
        return None
    return NativeCall(
        "divqat_conv_rows_add_s8",
        [*call.consts, df],
        0,
        tuple(to.shape),
        {**call.variant, "fused": f"ADD {op.add_name}"},
        inputs=(0, 1),
    )


def native_call(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    """The hand-written kernel for the conv (or the fused conv + ADD), or None: it keeps its TE kernel."""
    if isinstance(op, ConvAdd):
        return fused_call(graph, op, scheme)
    assert isinstance(op, Conv2D)
    return conv_call(graph, op, scheme)


# ---------------------------------------------------------------- the conv and its residual ADD as one op
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

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        """The conv's reference, then the ADD's."""
        mid = reference(graph, self.conv(), [inputs[0]], scheme).astype(np.int8)
        pair = [inputs[1], mid] if self.residual_first else [mid, inputs[1]]
        return elementwise.reference(graph, self.add(), pair, scheme)

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        """The conv's TE kernel with the ADD's stages after it (lower.schedule computes them under the conv's
        spatial loops): the same integers as the two TE kernels one after the other."""
        conv, add = self.conv(), self.add()
        _, conv_consts, conv_kw = te_kernel(graph, conv, scheme)
        add_fn, add_consts, add_kw = elementwise.te_kernel(graph, add, scheme)
        assert add_fn is elementwise.add
        n_conv = len(conv_consts)
        return (
            functools.partial(
                _conv_add_te, n_conv=n_conv, residual_first=self.residual_first, conv_kw=conv_kw, add_kw=add_kw
            ),
            conv_consts + add_consts,
            {},
        )


def _conv_add_te(x: Any, res: Any, *consts: Any, n_conv: int, residual_first: bool, conv_kw: dict, add_kw: dict) -> Any:
    y = conv2d(x, *consts[:n_conv], **conv_kw)
    a, b = (res, y) if residual_first else (y, res)
    return elementwise.add(a, b, *consts[n_conv:], **add_kw)


# ---------------------------------------------------------------- schedules: the candidates `--tune` measures
def gemm_variants(call: NativeCall) -> dict[str, NativeCall]:
    """The GEMM kernel's second column strategy: a direct (1x1) call through the im2col scratch too."""
    if call.function == "divqat_conv_s8" and call.variant.get("columns") == "direct":
        return {"native-im2col": _through_im2col(call)}
    return {}


def extra_candidates(graph: Graph, op: Op, scheme: str, call: NativeCall) -> dict[str, NativeCall]:
    """The conv's schedules besides its default kernel: the GEMM through im2col, the scratch-free rows."""
    out = gemm_variants(call)
    if call.function == "divqat_conv_s8" and type(op) is Conv2D:
        rows = rows_call(graph, op, scheme)
        if rows is not None:
            out["native-rows"] = rows
    return out


def _through_im2col(call: NativeCall) -> NativeCall:
    """The same conv call with DQ_DIRECT cleared: the kernel gathers the (1x1) K vector into its scratch."""
    flags = native.DESC_FIELDS.index("flags")
    desc = call.consts[2].copy()
    desc[flags] &= ~native.FLAG_DIRECT
    return dataclasses.replace(
        call, consts=[call.consts[0], call.consts[1], desc], variant={**call.variant, "columns": "im2col"}
    )


BLOCKS = {
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
}
BLOCKS["divqat_conv_rows_add_s8"] = BLOCKS["divqat_conv_rows_s8"]
