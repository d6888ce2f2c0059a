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
- `Transpose`, `Pad` (constant): data movement, the same codes and quantization.
- `Lut`: any function of one int8 code as a 256-entry table built offline as onnxruntime builds or computes it
  (Sigmoid: its QLinearSigmoid table, MLAS's logistic; Tanh, HardSigmoid, HardSwish: its float kernels between
  DequantizeLinear and QuantizeLinear; a kept Relu/Clip or a change of scale: QuantizeLinear of the value).
- `Concat`: inputs copied side by side, each through its own requantization table (QLinearConcat).
- `Mul`: onnxruntime's QLinearMul ("float") or TFLite's MUL ("fixed"), numpy broadcasting.
- `SoftmaxOrt`: onnxruntime's QLinearSoftmax along any axis ("float"), TFLite's softmax ("fixed", last axis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import kernels as K
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler import softmax as sm
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


# ---------------------------------------------------------------- functions of one int8 code: a 256-entry table
# MLAS's logistic (onnxruntime/core/mlas/lib/logistic.cpp, Eigen's rational approximation): what onnxruntime's
# Sigmoid and its fused QLinearSigmoid table compute. Coefficients as float32, evaluated with fused multiply-adds
# (the FMA3 kernel onnxruntime runs on x86-64; the SSE2 kernel gives the same tables on every tested scale).
_LOGISTIC_RANGE = 18.0
_LOGISTIC_P = (
    4.37031012579801e-11,
    1.15627324459942e-07,
    6.08574864600143e-05,
    8.51377133304701e-03,
    2.48287947061529e-01,
)
_LOGISTIC_Q = (
    6.10247389755681e-13,
    5.76102136993427e-09,
    6.29106785017040e-06,
    1.70198817374094e-03,
    1.16817656904453e-01,
    9.93151921023180e-01,
)


def _fma32(a: np.ndarray, b: np.ndarray | np.floating, c: np.ndarray | np.floating) -> np.ndarray:
    """fmaf elementwise: the float32 product is exact in float64 (48 bits), the sum is rounded once to float32
    (through float64: a second rounding only when the float64 sum lands exactly on a float32 tie)."""
    return (np.asarray(a, np.float64) * np.float64(b) + np.asarray(c, np.float64)).astype(np.float32)


def _mlas_rational(x: np.ndarray, bound: float, num: tuple[float, ...], den: tuple[float, ...]) -> np.ndarray:
    """x·P(x²)/Q(x²) on x clipped to ±bound, in MLAS's float32 order (Horner steps as fmaf): its logistic and tanh."""
    f = np.float32
    v = np.clip(np.asarray(x, f), f(-bound), f(bound))
    v2 = (v * v).astype(f)
    p = _fma32(v2, f(num[0]), f(num[1]))
    for c in num[2:]:
        p = _fma32(p, v2, f(c))
    p = (p * v).astype(f)
    q = _fma32(v2, f(den[0]), f(den[1]))
    for c in den[2:]:
        q = _fma32(q, v2, f(c))
    return (p / q).astype(f)


def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """MlasComputeLogistic on float32 values."""
    return (_mlas_rational(x, _LOGISTIC_RANGE, _LOGISTIC_P, _LOGISTIC_Q) + np.float32(0.5)).astype(np.float32)


# MLAS's tanh (tanh.cpp, Eigen's rational approximation on [−9, 9]): what onnxruntime's float Tanh computes
# (it runs DQ → Tanh → Q unfused).
_TANH_RANGE = 9.0
_TANH_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def mlas_tanh(x: np.ndarray) -> np.ndarray:
    """MlasComputeTanh on float32 values."""
    return _mlas_rational(x, _TANH_RANGE, _TANH_P, _TANH_Q)


def _hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """onnxruntime's HardSigmoid: min(1, max(0, alpha·x + beta)) in float32 (multiply, then add)."""
    f = np.float32
    return np.minimum(f(1), np.maximum(f(0), ((x * f(alpha)).astype(f) + f(beta)).astype(f))).astype(f)


UNARY_FUNCTIONS = ("identity", "sigmoid", "tanh", "hardsigmoid", "hardswish")


def float_function(func: str, x: np.ndarray, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    """The float32 function onnxruntime applies between DequantizeLinear and QuantizeLinear."""
    f = np.float32
    if func == "identity":
        return np.asarray(x, f)
    if func == "sigmoid":
        return mlas_logistic(x)
    if func == "tanh":
        return mlas_tanh(x)
    if func == "hardsigmoid":
        return _hard_sigmoid(x, alpha, beta)
    if func == "hardswish":
        return (x * _hard_sigmoid(x, 1.0 / 6.0, 0.5)).astype(f)
    raise ValueError(f"no table for '{func}' (known: {', '.join(UNARY_FUNCTIONS)})")


def unary_table(
    func: str,
    s_in: float,
    zp_in: int,
    s_out: float,
    zp_out: int,
    lo: int = QMIN,
    hi: int = QMAX,
    alpha: float = 0.2,
    beta: float = 0.5,
) -> np.ndarray:
    """int8 [256]: entry q + 128 is QuantizeLinear(func(DequantizeLinear(q))) clamped to [lo, hi], computed as
    onnxruntime does (QlinearBuildLookupTable: s_in·(q − zp_in) in float32, the function, then MLAS's
    QuantizeLinear: rint(y / s_out) clamped, + zp_out). A clamp [lo, hi] is a Relu/Clip applied to the float value
    before the quantization (quantization is monotone, so clamping the codes is the same)."""
    f = np.float32
    codes = np.arange(QMIN, QMAX + 1, dtype=np.int64)
    y = float_function(func, (f(s_in) * (codes - zp_in).astype(f)).astype(f), alpha, beta)
    q = np.rint(np.clip((y / f(s_out)).astype(f), f(QMIN - zp_out), f(QMAX - zp_out))).astype(np.int64) + zp_out
    return np.clip(q, lo, hi).astype(np.int8)


@dataclass
class Lut(Op):
    """Any function of one int8 code as a 256-entry table (Sigmoid, HardSigmoid, HardSwish, a kept Relu/Clip or
    a change of scale): table[x + 128]. Both requantization schemes use the table onnxruntime builds."""

    table: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    func: str = "identity"

    @property
    def kind(self) -> str:
        return f"lut_{self.func}"

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        return lut, [np.asarray(self.table, np.int8)], {}

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        return np.asarray(self.table, np.int8)[np.asarray(inputs[0]).astype(np.int64) + 128]


def lut(x, table):
    """TE: out = table[x + 128]."""
    return te.compute(tuple(x.shape), lambda *i: table[x[i].astype("int32") + 128], name="out")


# ---------------------------------------------------------------- Concat: each input through its own table
@dataclass
class Concat(Op):
    """ONNX Concat of int8 tensors along `axis`; an input whose scale or zero point differs from the output's
    is requantized by a table, as onnxruntime's QLinearConcat does."""

    axis: int = 1

    def tables(self, graph: Graph) -> np.ndarray:
        to = graph.tensors[self.output]
        rows = []
        for name in self.inputs:
            ti = graph.tensors[name]
            rows.append(unary_table("identity", ti.scale, ti.zero_point, to.scale, to.zero_point))
        return np.concatenate(rows).astype(np.int8)

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        sizes = tuple(graph.tensors[n].shape[self.axis] for n in self.inputs)
        return concat, [self.tables(graph)], dict(axis=self.axis, sizes=sizes)

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        t = self.tables(graph).reshape(len(self.inputs), 256)
        parts = [t[k][np.asarray(a).astype(np.int64) + 128] for k, a in enumerate(inputs)]
        return np.concatenate(parts, axis=self.axis).astype(np.int8)


def concat(*args, axis: int, sizes: tuple[int, ...]):
    """TE: the inputs side by side along `axis`, each read through its table (args: inputs..., tables)."""
    *xs, table = args
    shape = list(xs[0].shape)
    shape[axis] = sum(sizes)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]

    def f(*i):
        def read(k):
            j = list(i)
            j[axis] = i[axis] - starts[k]
            return table[k * 256 + xs[k][tuple(j)].astype("int32") + 128]

        v = read(len(xs) - 1)
        for k in range(len(xs) - 2, -1, -1):
            v = tirx.Select(i[axis] < starts[k + 1], read(k), v)
        return v

    return te.compute(tuple(shape), f, name="out")


# ---------------------------------------------------------------- Mul of two activations (broadcasting)
def _broadcast_index(i: tuple, shape: tuple[int, ...], out_rank: int) -> tuple:
    """Index into an operand of `shape` broadcast to rank `out_rank` (numpy rules)."""
    off = out_rank - len(shape)
    return tuple(0 if shape[d] == 1 else i[d + off] for d in range(len(shape)))


@dataclass
class Mul(Op):
    """int8 elementwise product with numpy broadcasting (e.g. squeeze-excite's [N,C,H,W]·[N,C,1,1]).
    "float": onnxruntime's QLinearMul (MLAS, x86): rint(float((a − za)(b − zb)) · f32(f32(sa·sb) / sc)) + zc;
    "fixed": TFLite's MUL: MultiplyByQuantizedMultiplier((a − za)(b − zb), sa·sb / sc) + zc."""

    act_min: int = QMIN
    act_max: int = QMAX

    def _ratio_f32(self, graph: Graph) -> np.float32:
        ta, tb, to = (graph.tensors[n] for n in (*self.inputs, self.output))
        f = np.float32
        return f(f(f(ta.scale) * f(tb.scale)) / f(to.scale))

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        ta, tb, to = (graph.tensors[n] for n in (*self.inputs, self.output))
        common: dict[str, Any] = dict(
            zp_a=ta.zero_point, zp_b=tb.zero_point, zp_out=to.zero_point, lo=self.act_min, hi=self.act_max
        )
        if scheme == "fixed":
            m, s = rq.quantize_multiplier(float(np.float64(ta.scale) * np.float64(tb.scale) / np.float64(to.scale)))
            return mul_fixed, [], {**common, "mult": int(m), "shift": int(s)}
        return mul_float, [np.array([self._ratio_f32(graph)], np.float32)], common

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        ta, tb, to = (graph.tensors[n] for n in (*self.inputs, self.output))
        a = np.asarray(inputs[0]).astype(np.int64) - ta.zero_point
        b = np.asarray(inputs[1]).astype(np.int64) - tb.zero_point
        prod = a * b  # numpy broadcasting, as ONNX's
        if scheme == "fixed":
            m, s = rq.quantize_multiplier(float(np.float64(ta.scale) * np.float64(tb.scale) / np.float64(to.scale)))
            v = rq.multiply_by_quantized_multiplier(prod, m, s) + to.zero_point
        else:
            v = np.rint((prod.astype(np.float32) * self._ratio_f32(graph)).astype(np.float32)).astype(np.int64)
            v = np.clip(v, -(2**31), 2**31 - 1) + to.zero_point
        return np.clip(v, self.act_min, self.act_max).astype(np.int8)


def _mul_product(a, b, zp_a: int, zp_b: int):
    rank = max(len(a.shape), len(b.shape))
    shape = tuple(
        max(int(x), int(y))
        for x, y in zip(
            (1,) * (rank - len(a.shape)) + tuple(int(d) for d in a.shape),
            (1,) * (rank - len(b.shape)) + tuple(int(d) for d in b.shape),
        )
    )
    sa, sb = tuple(int(d) for d in a.shape), tuple(int(d) for d in b.shape)
    return (
        shape,
        lambda *i: (
            (a[_broadcast_index(i, sa, rank)].astype("int32") - zp_a)
            * (b[_broadcast_index(i, sb, rank)].astype("int32") - zp_b)
        ),
    )


def mul_fixed(a, b, *, zp_a: int, zp_b: int, zp_out: int, lo: int, hi: int, mult: int, shift: int):
    """TE: TFLite MUL (fixed-point multiplier on the int32 product)."""
    shape, prod = _mul_product(a, b, zp_a, zp_b)
    r = K.Requant("fixed", zp_out, lo, hi)
    return K.requant_out(shape, prod, r, m_of=lambda i: mult, shift_of=lambda i: shift)


def mul_float(a, b, ratio, *, zp_a: int, zp_b: int, zp_out: int, lo: int, hi: int):
    """TE: onnxruntime QLinearMul: float32 product × ratio, round half to even, + zp_out, saturate."""
    shape, prod = _mul_product(a, b, zp_a, zp_b)
    lo_f = tirx.const(float(lo - zp_out), "float32")
    hi_f = tirx.const(float(hi - zp_out), "float32")

    def f(*i):
        v = prod(*i).astype("float32") * ratio[0]
        return (tirx.nearbyint(tirx.max(tirx.min(v, hi_f), lo_f)).astype("int32") + zp_out).astype("int8")

    return te.compute(shape, f, name="out")


# ---------------------------------------------------------------- Pad (constant mode)
@dataclass
class Pad(Op):
    """ONNX Pad, mode "constant": `before` / `after` elements per axis, filled with the code of the constant
    (QuantizeLinear of its float value at the tensor's scale and zero point; input and output share them)."""

    before: tuple[int, ...] = ()
    after: tuple[int, ...] = ()
    value: int = 0

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        return pad, [], dict(before=tuple(self.before), after=tuple(self.after), value=int(self.value))

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        x = np.asarray(inputs[0])
        widths = [(0, 0)] + list(zip(self.before[1:], self.after[1:]))  # any batch size
        return np.pad(x, widths, constant_values=self.value).astype(np.int8)


def pad(x, *, before: tuple[int, ...], after: tuple[int, ...], value: int):
    """TE: out[i] = x[i − before] inside the input, else the constant's code."""
    shape = tuple(int(d) + b + a for d, b, a in zip(x.shape, before, after))

    def f(*i):
        inside = tirx.const(True, "bool")
        for d, b in enumerate(before):
            if b or after[d]:
                inside = tirx.all(inside, i[d] >= b, i[d] < b + int(x.shape[d]))
        src = tuple(tirx.max(tirx.min(i[d] - b, int(x.shape[d]) - 1), 0) for d, b in enumerate(before))
        return tirx.Select(inside, x[src], tirx.const(value, "int8"))

    return te.compute(shape, f, name="out")


# ---------------------------------------------------------------- Softmax along any axis
@dataclass
class SoftmaxOrt(Op):
    """ONNX Softmax between Q/DQ along `axis`. "float": onnxruntime's fused QLinearSoftmax (float table of exps,
    float32 row sum, softmax.softmax_ort); "fixed": TFLite's fixed-point softmax (last axis, output scale 1/256 and
    zero point −128, as TFLite requires), else refused."""

    axis: int = -1

    @property
    def kind(self) -> str:
        return "softmax"  # the output is probabilities (manifest output.kind)

    def _fixed_ok(self, graph: Graph) -> None:
        from divqat_tvm.errors import CompileError

        to = graph.tensors[self.output]
        if self.axis != len(to.shape) - 1 or to.scale != sm.OUTPUT_SCALE or to.zero_point != sm.OUTPUT_ZERO_POINT:
            raise CompileError(
                f"Softmax '{self.name}' along axis {self.axis} with output scale {to.scale}, zero point "
                f"{to.zero_point} has no fixed-point (TFLite) form.",
                "Compile with --requant float (onnxruntime's arithmetic), or quantize the softmax output with "
                "scale 1/256, zero point -128 along the last axis.",
            )

    def te_kernel_for(self, graph: Graph, scheme: str) -> KernelSpec:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        if scheme == "fixed":
            self._fixed_ok(graph)
            return sm.softmax, [sm.exp_table(sm.softmax_params(1.0, ti.scale))], {}
        table = sm.ort_exp_table(ti.scale, ti.shape[self.axis])
        return (
            sm.softmax_ort,
            [table, np.array([sm.ort_y_scale(to.scale)], np.float32)],
            dict(axis=self.axis, zp_out=to.zero_point),
        )

    def run_reference_for(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        if scheme == "fixed":
            self._fixed_ok(graph)
            return sm.softmax_int8_reference(np.asarray(inputs[0]), sm.softmax_params(1.0, ti.scale))
        return sm.softmax_ort_reference(np.asarray(inputs[0]), self.axis, ti.scale, to.scale, to.zero_point)
