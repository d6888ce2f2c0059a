"""Pooling: max, average (ONNX/QDQ: the full window as divisor, or onnxruntime's float arithmetic), global
average, ONNX's AveragePool with partial windows (`AvgPoolWindowed`) and TFLite's average pool
(`TfliteAvgPool`), each with its TE kernel (all reduce over one `PoolWindow`) and its numpy reference.

- `AvgPoolWindowed`: ONNX AveragePool whose windows are not all full: ceil_mode=1 (PyTorch's and the ONNX spec's
  divisor: the window clipped to the padded input when count_include_pad=1) or count_include_pad=0 with padding
  (divisor: the taps inside the input). "fixed": Σ(x − zp_in) requantized by the fixed-point multiplier of
  s_in / (s_out · divisor) per output position. "float": s_in·(x − zp_in) summed row by row in float32, divided by
  the divisor, then requantized as onnxruntime does: for count_include_pad=0 as its fused x86 QLinearAveragePool
  (rint(y / s_out + zp_out + 128) − 128, the uint8 domain; bit-exact with ORT_ENABLE_ALL); for count_include_pad=1
  as its unfused DequantizeLinear → AveragePool → QuantizeLinear (rint(y / s_out) + zp_out; bit-exact with
  ORT_DISABLE_ALL), because the fused QLinearAveragePool divides a partial ceil_mode window by the full kernel
  size, which the spec and PyTorch do not.
- `TfliteAvgPool`: TFLite's int8 average pool (reference_integer_ops::AveragePool): the sum of raw int8 values over
  the in-bounds part of the window, divided by the in-bounds count rounding half away from zero, clamped; no
  rescaling (TFLite requires equal input and output quantization).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tvm import te, tirx

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import QMAX, QMIN, AvgPool, GlobalAvgPool, Graph, MaxPool, Op, QTensor
from divqat_tvm.compiler.ops import common as C


def claims(op: Op) -> bool:
    return isinstance(op, (MaxPool, AvgPool, GlobalAvgPool, AvgPoolWindowed, TfliteAvgPool))


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    if isinstance(op, (AvgPoolWindowed, TfliteAvgPool)):
        return op.te_kernel(graph, scheme)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    geom: dict[str, Any] = dict(layout=ti.layout, in_nchw=ti.nchw(), out_nchw=to.nchw())
    if isinstance(op, MaxPool):
        return max_pool, [], dict(**geom, kernel=op.kernel, stride=op.stride, padding=op.padding)
    if isinstance(op, AvgPool) and scheme == "float":
        fp = np.array([ti.scale, to.scale, op.kernel[0] * op.kernel[1]], np.float32)
        window = dict(kernel=op.kernel, stride=op.stride, padding=op.padding)
        return avg_pool_ort, [fp], dict(**geom, **window, zp_in=ti.zero_point, zp_out=to.zero_point)
    assert isinstance(op, (AvgPool, GlobalAvgPool))
    _, _, h, w = ti.nchw()
    kernel, stride, pad = (
        ((h, w), (1, 1), (0, 0, 0, 0)) if isinstance(op, GlobalAvgPool) else (op.kernel, op.stride, op.padding)
    )
    count = kernel[0] * kernel[1]
    fp_ = (
        []
        if scheme == "fixed"
        else [np.array([np.float32(ti.scale) / (np.float32(to.scale) * np.float32(count))], np.float32)]
    )
    params = dict(
        **geom,
        kernel=kernel,
        stride=stride,
        padding=pad,
        zp_in=ti.zero_point,
        s_in=ti.scale,
        s_out=to.scale,
        r=C.Requant(scheme, to.zero_point, -128, 127),
    )
    return avg_pool, fp_, params


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    if isinstance(op, (AvgPoolWindowed, TfliteAvgPool)):
        return op.reference(graph, inputs, scheme)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = np.asarray(inputs[0])
    if isinstance(op, MaxPool):
        return C.from_nchw(to, _pool_windows(ti, x, op.kernel, op.stride, op.padding, -128).max(axis=(4, 5)))
    if isinstance(op, AvgPool) and scheme == "float":
        return C.from_nchw(
            to, _avg_pool_ort(_pool_windows(ti, x, op.kernel, op.stride, op.padding, ti.zero_point), ti, to)
        )
    if isinstance(op, AvgPool):
        win = _pool_windows(ti, x, op.kernel, op.stride, op.padding, ti.zero_point)
        total = (win - ti.zero_point).sum(axis=(4, 5))
        return C.from_nchw(to, _avg_requant(total, op.kernel[0] * op.kernel[1], ti, to, scheme))
    assert isinstance(op, GlobalAvgPool)
    xn = C.to_nchw(ti, x).astype(np.int64)
    total = (xn - ti.zero_point).sum(axis=(2, 3), keepdims=True)
    return C.from_nchw(to, _avg_requant(total, xn.shape[2] * xn.shape[3], ti, to, scheme))


def native_call(graph: Graph, op: Op, scheme: str) -> None:
    """No hand-written pooling kernel: TVM's code from the TE kernels is as fast here."""
    return None


BLOCKS: dict[str, dict[str, str]] = {}


def _pool_windows(t: QTensor, a: np.ndarray, kernel, stride, padding, pad_value: int) -> np.ndarray:
    x = C.to_nchw(t, a).astype(np.int64)
    pt, pl, pb, pr = padding
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    return sliding_window_view(x, tuple(kernel), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]


def _avg_requant(total: np.ndarray, count: int, ti: QTensor, to: QTensor, scheme: str) -> np.ndarray:
    """Σ(x − zp_in) over `count` elements → int8 at the output scale."""
    if scheme == "fixed":
        m, s = rq.quantize_multiplier(ti.scale / (to.scale * count))
        v = rq.multiply_by_quantized_multiplier(total, m, s) + to.zero_point
    else:
        scale = np.float32(ti.scale) / (np.float32(to.scale) * np.float32(count))
        v = rq.round_half_even_f32(total.astype(np.float32) * scale) + to.zero_point
    return np.clip(v, -128, 127)


def _avg_pool_ort(win: np.ndarray, ti: QTensor, to: QTensor) -> np.ndarray:
    """onnxruntime QLinearAveragePool: float32 dequantized values summed row by row, / window, then
    nearbyint(y / s_out + zp_out) with zp_out in the uint8 domain (x86; requant.ORT_U8_OFFSET). Padding holds
    zp_in, i.e. adds 0.0."""
    kh, kw = win.shape[-2:]
    deq = np.float32(ti.scale) * (win - ti.zero_point).astype(np.float32)
    acc = np.zeros(win.shape[:-2], np.float32)
    for i in range(kh):
        for j in range(kw):
            acc = (acc + deq[..., i, j]).astype(np.float32)
    y = acc / np.float32(kh * kw)
    u = rq.ORT_U8_OFFSET
    v = np.rint((y / np.float32(to.scale) + np.float32(to.zero_point + u)).astype(np.float32)).astype(np.int64) - u
    return np.clip(v, -128, 127)


class PoolWindow:
    """A pooling window slid over an H×W input: the reduction axes over its taps, and for each output position
    which taps land inside the input. Every pooling kernel (max, average, onnxruntime's float average,
    TFLite's average) reduces over it; they differ only in the value a tap gives and what padding gives.

    Args:
        kernel, stride: (height, width) of the window and of its step.
        padding: (top, left, ...) rows and columns of padding before the input.
        in_hw: (H, W) of the input.
    """

    def __init__(self, kernel, stride, padding, in_hw) -> None:
        self.ry = te.reduce_axis((0, kernel[0]), "ry")
        self.rx = te.reduce_axis((0, kernel[1]), "rx")
        self.kernel, self.stride, self.pad, self.in_hw = (
            tuple(kernel),
            tuple(stride),
            (padding[0], padding[1]),
            tuple(in_hw),
        )

    def reduce(self, reducer, yy, xx, value_at, outside):
        """`reducer` (te.sum, te.max) over the window at output (yy, xx) of `value_at(y, z)` for a tap inside the
        input at row y, column z, and of `outside` for a padded tap. The row and column passed are clamped into
        the input, so no index is ever out of bounds, whichever branch the generated code evaluates; TVM
        simplifies the clamps away under the in-bounds test."""
        ih, iw = self.in_hw
        y = yy * self.stride[0] + self.ry - self.pad[0]
        z = xx * self.stride[1] + self.rx - self.pad[1]
        inside = tirx.all(y >= 0, y < ih, z >= 0, z < iw)
        v = value_at(tirx.max(tirx.min(y, ih - 1), 0), tirx.max(tirx.min(z, iw - 1), 0))
        return reducer(tirx.if_then_else(inside, v, outside), axis=[self.ry, self.rx])

    def count_inside(self, yy, xx):
        """How many taps of the window at output (yy, xx) land inside the input (int32)."""
        (kh, kw), (ih, iw) = self.kernel, self.in_hw
        y0 = yy * self.stride[0] - self.pad[0]
        x0 = xx * self.stride[1] - self.pad[1]
        return ((tirx.min(y0 + kh, ih) - tirx.max(y0, 0)) * (tirx.min(x0 + kw, iw) - tirx.max(x0, 0))).astype("int32")


def max_pool(x, *, layout: str, in_nchw, out_nchw, kernel, stride, padding):
    """int8 max pool; padded positions never win (they read as −128)."""
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    win = PoolWindow(kernel, stride, padding, (ih, iw))

    def f(*i):
        b, k, yy, xx = C.nchw_index(layout, i)
        return win.reduce(te.max, yy, xx, lambda y, z: x[C.layout_index(layout, b, k, y, z)], tirx.const(-128, "int8"))

    return te.compute(C.layout_index(layout, n, c, oh, ow), f, name="out")


def avg_pool(
    x,
    *fparams,
    layout: str,
    in_nchw,
    out_nchw,
    kernel,
    stride,
    padding,
    zp_in: int,
    s_in: float,
    s_out: float,
    r: C.Requant,
):
    """int8 average pool (window divisor, count_include_pad) or, with kernel = (H, W), global average pool:
    Σ(x − zp_in) then requantized by s_in / (s_out · count): fixed point, or for "float" the float32
    scale in `fparams[0]` (MLAS QLinearGlobalAveragePool: s_in / (s_out · float(count)))."""
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    count = kernel[0] * kernel[1]
    win = PoolWindow(kernel, stride, padding, (ih, iw))
    acc = te.compute(
        (n, c, oh, ow),
        lambda b, k, yy, xx: win.reduce(
            te.sum,
            yy,
            xx,
            lambda y, z: x[C.layout_index(layout, b, k, y, z)].astype("int32"),
            tirx.const(zp_in, "int32"),
        ),
        name="acc",
    )

    def pre(*i):
        return acc[C.nchw_index(layout, i)] - zp_in * count

    shape = C.layout_index(layout, n, c, oh, ow)
    if r.scheme == "fixed":
        m, sh = rq.quantize_multiplier(s_in / (s_out * count))
        return C.requant_out(shape, pre, r, m_of=lambda i: m, shift_of=lambda i: sh)
    return C.requant_out(shape, pre, r, scale_of=lambda i: fparams[0][0])


def avg_pool_ort(x, fparams, *, layout: str, in_nchw, out_nchw, kernel, stride, padding, zp_in: int, zp_out: int):
    """onnxruntime's QLinearAveragePool (the "float" scheme of a windowed average pool): dequantize each
    element (s_in · (x − zp_in), float32), sum the window row by row in float32, divide by the window
    size, then nearbyint(y / s_out + zp_out) with zp_out + 128 (x86's uint8 domain), saturate.
    fparams = float32 [s_in, s_out, window size]."""
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    win = PoolWindow(kernel, stride, padding, (ih, iw))

    def acc_f(b, k, yy, xx):
        return win.reduce(
            te.sum,
            yy,
            xx,
            lambda y, z: fparams[0] * (x[C.layout_index(layout, b, k, y, z)].astype("int32") - zp_in).astype("float32"),
            tirx.const(0.0, "float32"),
        )

    acc = te.compute((n, c, oh, ow), acc_f, name="acc")

    def out_f(*i):
        u = rq.ORT_U8_OFFSET  # zp_out in x86 onnxruntime's uint8 domain: it is added before rounding
        v = tirx.nearbyint(
            acc[C.nchw_index(layout, i)] / fparams[2] / fparams[1] + tirx.const(float(zp_out + u), "float32")
        )
        v = tirx.max(tirx.min(v, tirx.const(255.0, "float32")), tirx.const(0.0, "float32"))
        return (v.astype("int32") - u).astype("int8")

    return te.compute(C.layout_index(layout, n, c, oh, ow), out_f, name="out")


# ---------------------------------------------------------------- ONNX AveragePool with partial windows
def pool_divisors(
    n_out: int, n_in: int, k: int, stride: int, pad_before: int, pad_after: int, count_include_pad: bool
) -> np.ndarray:
    """Divisor along one axis per output index: with count_include_pad, the window clipped to the padded input
    [−pad_before, n_in + pad_after) (ONNX spec, PyTorch); without, the taps inside [0, n_in)."""
    counts: list[int] = []
    for o in range(n_out):
        s = o * stride - pad_before
        if count_include_pad:
            counts.append(min(s + k, n_in + pad_after) - s)
        else:
            counts.append(min(s + k, n_in) - max(s, 0))
    d = np.array(counts, np.int64)
    if np.any(d <= 0):
        raise ValueError("an average-pool window lies entirely in the padding")
    return d


@dataclass
class AvgPoolWindowed(Op):
    """ONNX AveragePool with a per-window divisor (ceil_mode partial windows or count_include_pad=0)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    count_include_pad: bool = True

    @property
    def kind(self) -> str:
        return "avgpool"

    def divisors(self, graph: Graph) -> np.ndarray:
        """int64 [OH, OW] divisor of each output position."""
        _, _, ih, iw = graph.tensors[self.inputs[0]].nchw()
        _, _, oh, ow = graph.tensors[self.output].nchw()
        pt, pl, pb, pr = self.padding
        dh = pool_divisors(oh, ih, self.kernel[0], self.stride[0], pt, pb, self.count_include_pad)
        dw = pool_divisors(ow, iw, self.kernel[1], self.stride[1], pl, pr, self.count_include_pad)
        return dh[:, None] * dw[None, :]

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        d = self.divisors(graph).reshape(-1)
        common: dict[str, Any] = dict(
            layout=ti.layout,
            in_nchw=ti.nchw(),
            out_nchw=to.nchw(),
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            zp_in=ti.zero_point,
            zp_out=to.zero_point,
        )
        if scheme == "fixed":
            m, s = rq.quantize_multipliers(np.float64(ti.scale) / (np.float64(to.scale) * d.astype(np.float64)))
            return avg_pool_windowed_fixed, [m.astype(np.int32), s.astype(np.int32)], common
        fp = np.concatenate([np.array([ti.scale, to.scale], np.float32), d.astype(np.float32)])
        return avg_pool_windowed_float, [fp], {**common, "u8_domain": not self.count_include_pad}

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        x = C.to_nchw(ti, np.asarray(inputs[0])).astype(np.int64)
        n, c, ih, iw = x.shape
        _, _, oh, ow = to.nchw()
        pt, pl, _, _ = self.padding
        kh, kw = self.kernel
        d = self.divisors(graph)
        y = np.zeros((n, c, oh, ow), np.int64)
        for oy in range(oh):
            for ox in range(ow):
                y0, x0 = oy * self.stride[0] - pt, ox * self.stride[1] - pl
                win = x[:, :, max(y0, 0) : min(y0 + kh, ih), max(x0, 0) : min(x0 + kw, iw)] - ti.zero_point
                if scheme == "fixed":
                    m, s = rq.quantize_multiplier(
                        float(np.float64(ti.scale) / (np.float64(to.scale) * float(d[oy, ox])))
                    )
                    v = rq.multiply_by_quantized_multiplier(win.sum(axis=(2, 3)), m, s) + to.zero_point
                else:
                    acc = np.zeros((n, c), np.float32)
                    for i in range(win.shape[2]):
                        for j in range(win.shape[3]):
                            acc = (acc + np.float32(ti.scale) * win[:, :, i, j].astype(np.float32)).astype(np.float32)
                    yv = (acc / np.float32(d[oy, ox])).astype(np.float32)
                    if self.count_include_pad:  # onnxruntime unfused: QuantizeLinear rounds, then adds zp
                        v = np.rint((yv / np.float32(to.scale)).astype(np.float32)).astype(np.int64) + to.zero_point
                    else:  # fused x86 QLinearAveragePool: zp_out + 128 added before rounding
                        u = rq.ORT_U8_OFFSET
                        t = (yv / np.float32(to.scale)).astype(np.float32) + np.float32(to.zero_point + u)
                        v = np.rint(t.astype(np.float32)).astype(np.int64) - u
                y[:, :, oy, ox] = v
        return C.from_nchw(to, np.clip(y, QMIN, QMAX)).astype(np.int8)


def _window_sum(x, value, zero, *, layout, in_nchw, out_nchw, kernel, stride, padding):
    """(N, C, OH, OW): `value` of each in-bounds tap summed over its window (`zero` for a padded one)."""
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    win = PoolWindow(kernel, stride, padding, (ih, iw))
    return te.compute(
        (n, c, oh, ow),
        lambda b, k, yy, xx: win.reduce(
            te.sum, yy, xx, lambda y, z: value(x[C.layout_index(layout, b, k, y, z)]), zero
        ),
        name="acc",
    )


def avg_pool_windowed_fixed(x, mult, shift, *, zp_in: int, zp_out: int, **window):
    """TE: Σ(x − zp_in) over the in-bounds taps, × the fixed-point multiplier of its output position, + zp_out.
    `window`: layout, in_nchw, out_nchw, kernel, stride, padding."""
    layout, ow = window["layout"], window["out_nchw"][3]
    acc = _window_sum(x, lambda v: v.astype("int32") - zp_in, tirx.const(0, "int32"), **window)
    shape = C.layout_index(layout, *window["out_nchw"])
    r = C.Requant("fixed", zp_out, QMIN, QMAX)

    def pos(i):
        _, _, yy, xx = C.nchw_index(layout, i)
        return yy * ow + xx

    return C.requant_out(
        shape, lambda *i: acc[C.nchw_index(layout, i)], r, m_of=lambda i: mult[pos(i)], shift_of=lambda i: shift[pos(i)]
    )


def avg_pool_windowed_float(x, fp, *, zp_in: int, zp_out: int, u8_domain: bool, **window):
    """TE: float32 Σ s_in·(x − zp_in) row by row, / divisor[position], then rint(y / s_out) + zp_out (or, with
    `u8_domain`, rint(y / s_out + zp_out + 128) − 128), saturate. fp = float32 [s_in, s_out, divisors...]."""
    layout, out_nchw = window["layout"], window["out_nchw"]
    ow = out_nchw[3]
    acc = _window_sum(
        x, lambda v: fp[0] * (v.astype("int32") - zp_in).astype("float32"), tirx.const(0.0, "float32"), **window
    )

    def out_f(*i):
        b, k, yy, xx = C.nchw_index(layout, i)
        y = acc[b, k, yy, xx] / fp[2 + yy * ow + xx]
        if u8_domain:
            u = rq.ORT_U8_OFFSET
            v = tirx.nearbyint(y / fp[1] + tirx.const(float(zp_out + u), "float32")) - tirx.const(
                float(zp_out + u), "float32"
            )
        else:
            v = tirx.nearbyint(y / fp[1])
        v = tirx.max(
            tirx.min(v, tirx.const(float(QMAX - zp_out), "float32")), tirx.const(float(QMIN - zp_out), "float32")
        )
        return (v.astype("int32") + zp_out).astype("int8")

    return te.compute(C.layout_index(layout, *out_nchw), out_f, name="out")


# ---------------------------------------------------------------- TFLite's average pool
@dataclass
class TfliteAvgPool(Op):
    """TFLite int8 average pool over an NHWC tensor (padding excluded from the count)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    act_min: int = QMIN
    act_max: int = QMAX

    @property
    def kind(self) -> str:
        return "avgpool_tflite"

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        out = graph.tensors[self.output]
        return (
            avg_pool_nhwc,
            [],
            dict(
                out_shape=tuple(out.shape),
                kernel=self.kernel,
                stride=self.stride,
                pad=(self.padding[0], self.padding[1]),
                lo=self.act_min,
                hi=self.act_max,
            ),
        )

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        x = np.asarray(inputs[0], dtype=np.int64)
        n, ih, iw, c = x.shape
        _, oh, ow, _ = graph.tensors[self.output].shape
        y = np.zeros((n, oh, ow, c), dtype=np.int64)
        for oy in range(oh):
            for ox in range(ow):
                y0, x0 = oy * self.stride[0] - self.padding[0], ox * self.stride[1] - self.padding[1]
                win = x[:, max(y0, 0) : min(y0 + self.kernel[0], ih), max(x0, 0) : min(x0 + self.kernel[1], iw), :]
                count = win.shape[1] * win.shape[2]
                acc = win.sum(axis=(1, 2))
                half = count // 2
                y[:, oy, ox, :] = np.where(acc > 0, (acc + half) // count, -((-(acc - half)) // count))
        return np.clip(y, self.act_min, self.act_max).astype(np.int8)


def avg_pool_nhwc(x, *, out_shape, kernel, stride, pad, lo: int, hi: int):
    """TE: Σ in-bounds x / in-bounds count, rounded half away from zero (C truncating division), clamped."""
    _, ih, iw, _ = (int(d) for d in x.shape)
    win = PoolWindow(kernel, stride, pad, (ih, iw))
    acc = te.compute(
        tuple(out_shape),
        lambda b, yy, xx, k: win.reduce(
            te.sum, yy, xx, lambda y, z: x[b, y, z, k].astype("int32"), tirx.const(0, "int32")
        ),
        name="acc",
    )

    def out_f(b, yy, xx, k):
        count = win.count_inside(yy, xx)
        a = acc[b, yy, xx, k]
        half = tirx.truncdiv(count, 2)
        v = tirx.Select(a > 0, tirx.truncdiv(a + half, count), tirx.truncdiv(a - half, count))
        return tirx.max(tirx.min(v, hi), lo).astype("int8")

    return te.compute(tuple(out_shape), out_f, name="out")
