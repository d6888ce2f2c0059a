"""Operators added for issue #15 (coverage), each with its TE kernel and its numpy reference.

Like tflite_ops.py, every op here carries its own kernel and reference, so lower.py / reference.py need no
per-op dispatch: an op whose kernel depends on the requantization scheme defines
`te_kernel_for(graph, scheme) -> (TE function, constant arrays, keyword parameters)` and
`run_reference_for(graph, inputs, scheme) -> int8 array`. The reference is written the plain way (numpy
loops / padding), the kernel as TE, so that a mistake in one does not hide in the other.

- `AvgPoolWindowed`: ONNX AveragePool whose windows are not all full: ceil_mode=1 (PyTorch's and the ONNX
  spec's divisor: the window clipped to the padded input when count_include_pad=1) or count_include_pad=0
  with padding (divisor: the taps inside the input). "fixed": Σ(x − zp_in) requantized by the fixed-point
  multiplier of s_in / (s_out · divisor) per output position. "float": s_in·(x − zp_in) summed row by row in
  float32, divided by the divisor, then requantized as onnxruntime does: for count_include_pad=0 as its fused
  x86 QLinearAveragePool (rint(y / s_out + zp_out + 128) − 128, the uint8 domain; bit-exact with
  ORT_ENABLE_ALL); for count_include_pad=1 as its unfused DequantizeLinear → AveragePool → QuantizeLinear
  (rint(y / s_out) + zp_out; bit-exact with ORT_DISABLE_ALL), because the fused QLinearAveragePool divides a
  partial ceil_mode window by the full kernel size, which the spec and PyTorch do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import kernels as K
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import QMAX, QMIN, Graph, Op, QTensor

KernelSpec = tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]


def _to_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if t.layout == "NHWC" else a


def _from_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if t.layout == "NHWC" else a


# ---------------------------------------------------------------- AveragePool with partial windows
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

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
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

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        x = _to_nchw(ti, np.asarray(inputs[0])).astype(np.int64)
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
        return _from_nchw(to, np.clip(y, QMIN, QMAX)).astype(np.int8)


def _window_sum(x, layout, in_nchw, out_nchw, kernel, stride, padding, value, zero, name="acc"):
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    win = K.PoolWindow(kernel, stride, padding, (ih, iw))
    return te.compute(
        (n, c, oh, ow),
        lambda b, k, yy, xx: win.reduce(te.sum, yy, xx, lambda y, z: value(x[K._index(layout, b, k, y, z)]), zero),
        name=name,
    )


def avg_pool_windowed_fixed(
    x, mult, shift, *, layout, in_nchw, out_nchw, kernel, stride, padding, zp_in: int, zp_out: int
):
    """TE: Σ(x − zp_in) over the in-bounds taps, × the fixed-point multiplier of its output position, + zp_out."""
    _, _, _, ow = out_nchw
    acc = _window_sum(
        x,
        layout,
        in_nchw,
        out_nchw,
        kernel,
        stride,
        padding,
        lambda v: v.astype("int32") - zp_in,
        tirx.const(0, "int32"),
    )
    shape = K._index(layout, *out_nchw)
    r = K.Requant("fixed", zp_out, QMIN, QMAX)

    def pos(i):
        _, _, yy, xx = K._nchw(layout, i)
        return yy * ow + xx

    return K.requant_out(
        shape, lambda *i: acc[K._nchw(layout, i)], r, m_of=lambda i: mult[pos(i)], shift_of=lambda i: shift[pos(i)]
    )


def avg_pool_windowed_float(
    x, fp, *, layout, in_nchw, out_nchw, kernel, stride, padding, zp_in: int, zp_out: int, u8_domain: bool
):
    """TE: float32 Σ s_in·(x − zp_in) row by row, / divisor[position], then rint(y / s_out) + zp_out (or, with
    `u8_domain`, rint(y / s_out + zp_out + 128) − 128), saturate. fp = float32 [s_in, s_out, divisors...]."""
    _, _, _, ow = out_nchw
    acc = _window_sum(
        x,
        layout,
        in_nchw,
        out_nchw,
        kernel,
        stride,
        padding,
        lambda v: fp[0] * (v.astype("int32") - zp_in).astype("float32"),
        tirx.const(0.0, "float32"),
    )

    def out_f(*i):
        b, k, yy, xx = K._nchw(layout, i)
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

    return te.compute(K._index(layout, *out_nchw), out_f, name="out")


# ---------------------------------------------------------------- data movement (same codes, same qparams)
@dataclass
class Transpose(Op):
    """Permute the axes (ONNX Transpose, `perm`); the codes are copied unchanged."""

    perm: tuple[int, ...] = ()

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        return transpose, [], dict(perm=tuple(self.perm))

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
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
