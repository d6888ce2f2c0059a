"""int8 kernels as TVM tensor expressions: int8 loads, int32 accumulation, bias, requantization, clamp,
int8 store. TVM schedules them (see lower.py) and generates their C.

Each kernel takes TE placeholders (activations and constant arrays) plus Python scalars (shapes,
zero points, per-tensor multipliers) that are baked into the code. Dense folds the input zero point
into the bias (Σ(x−zp)·w = Σx·w − zp·Σw); conv reduces over the in-bounds kernel taps only and subtracts
the zero point per product, so no padding is read or tested (see conv2d).

Requantization is a parameter: "fixed" (TFLite/CMSIS-NN fixed point, integer only) or "float"
(onnxruntime/MLAS: float32 multiply, round half to even); see requant.py for the reference math.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import requant as rq

SCHEMES = ("fixed", "float")

# C helper Σ (x[i] − zp)·w[i] over n contiguous int8 pairs, defined by lower.DOT_S8_C in the emitted source
# (ACLE SMLAD on cores with the DSP extension, a plain loop elsewhere). NHWC convs call it once per kernel row.
DOT_S8 = "divqat_dot_s8"


@dataclass(frozen=True)
class Requant:
    """How an int32 accumulator becomes int8: the scheme, output zero point and clamp."""

    scheme: str
    zero_point: int
    lo: int
    hi: int


def _i64(v):
    return v.astype("int64") if hasattr(v, "astype") else tirx.const(int(v), "int64")


def _i32(v):
    return v if hasattr(v, "astype") else tirx.const(int(v), "int32")


def mbqm_tensor(shape, pre, m_of, shift_of, name: str):
    """TFLite MultiplyByQuantizedMultiplier of `pre(*i)` (int32) as three small TE stages.

    Stages instead of one big expression: a value used several times (the 64-bit product, the high
    word) is read from a stage rather than copied into every use. The schedule computes the stages
    inside the consumer's loop nest, so each becomes a scalar temporary, not a tensor.
    `m_of(i)` / `shift_of(i)` give the multiplier and shift for output index i (PrimExpr or int).
    """

    def saturate32(v):  # CMSIS-NN saturates the left shift (quant.primitives does the same)
        return tirx.max(tirx.min(v, tirx.const(2**31 - 1, "int64")), tirx.const(-(2**31), "int64")).astype("int32")

    def left_shifted(i):
        sh = shift_of(i)
        if isinstance(sh, int):
            return pre(*i) if sh <= 0 else saturate32(pre(*i).astype("int64") * (1 << sh))
        return saturate32(tirx.shift_left(pre(*i).astype("int64"), tirx.max(sh, 0).astype("int64")))

    ab = te.compute(shape, lambda *i: left_shifted(i).astype("int64") * _i64(m_of(i)), name=f"{name}_ab")
    half = tirx.const(1 << 30, "int64")
    k31 = tirx.const(31, "int64")
    hi = te.compute(
        shape,
        lambda *i: tirx.Select(
            ab[i] >= 0, tirx.shift_right(ab[i] + half, k31), -tirx.shift_right(half - 1 - ab[i], k31)
        ).astype("int32"),
        name=f"{name}_hi",
    )

    def rdbpot(*i):
        sh = shift_of(i)
        right = tirx.const(max(-sh, 0), "int32") if isinstance(sh, int) else tirx.max(-sh, 0)
        mask = tirx.shift_left(tirx.const(1, "int32"), right) - 1
        thr = tirx.shift_right(mask, tirx.const(1, "int32")) + tirx.Select(
            hi[i] < 0, tirx.const(1, "int32"), tirx.const(0, "int32")
        )
        return tirx.shift_right(hi[i], right) + tirx.Select(
            tirx.bitwise_and(hi[i], mask) > thr, tirx.const(1, "int32"), tirx.const(0, "int32")
        )

    return te.compute(shape, rdbpot, name=f"{name}_q")


def _clamp_store(v, r: Requant):
    return tirx.max(tirx.min(v, r.hi), r.lo).astype("int8")


def requant_out(shape, pre, r: Requant, m_of=None, shift_of=None, scale_of=None):
    """int32 `pre(*i)` → int8 output tensor by the chosen scheme (clamped to [r.lo, r.hi])."""
    if r.scheme == "fixed":
        q = mbqm_tensor(shape, pre, m_of, shift_of, "rq")
        return te.compute(shape, lambda *i: _clamp_store(q[i] + r.zero_point, r), name="out")
    lo = tirx.const(float(r.lo - r.zero_point), "float32")
    hi = tirx.const(float(r.hi - r.zero_point), "float32")
    v = te.compute(shape, lambda *i: pre(*i).astype("float32") * scale_of(i), name="rq_scaled")
    return te.compute(
        shape,
        lambda *i: _clamp_store(tirx.nearbyint(tirx.max(tirx.min(v[i], hi), lo)).astype("int32") + r.zero_point, r),
        name="out",
    )


def _index(layout: str, n, c, h, w):
    """(n, c, h, w) in the tensor's layout order; also its shape from NCHW sizes."""
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _nchw(layout: str, i):
    """The inverse of `_index`: an index in layout order → (n, c, h, w)."""
    return (i[0], i[1], i[2], i[3]) if layout == "NCHW" else (i[0], i[3], i[1], i[2])


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
    r: Requant,
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
        v = x[_index(layout, b, c, yy * sh + ry * dh - pt, xx * sw + rx * dw - pl)].astype("int32") - zp_in
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

    return requant_out(
        shape, pre, r, m_of=lambda i: p0[ch(i)], shift_of=lambda i: p1[0][ch(i)], scale_of=lambda i: p0[ch(i)]
    )


def dense(x, w, bias, p0, *p1, r: Requant):
    """int8 fully connected [N, In] × [Out, In]ᵀ with per-output requantization."""
    n, k_in = (int(d) for d in x.shape)
    k_out = int(w.shape[0])
    rk = te.reduce_axis((0, k_in), "rk")
    acc = te.compute(
        (n, k_out), lambda b, o: te.sum(x[b, rk].astype("int32") * w[o, rk].astype("int32"), axis=rk), name="acc"
    )

    return requant_out(
        (n, k_out),
        lambda b, o: acc[b, o] + bias[o],
        r,
        m_of=lambda i: p0[i[1]],
        shift_of=lambda i: p1[0][i[1]],
        scale_of=lambda i: p0[i[1]],
    )


def add_float_params(zp_a: int, zp_b: int, s_a: float, s_b: float, s_out: float, zp_out: int) -> np.ndarray:
    """MLAS QLinearAdd's float32 constants [a/c scale ratio, b/c ratio, fixed part], computed as MLAS does,
    with the zero points in x86 onnxruntime's uint8 domain (+ requant.ORT_U8_OFFSET).

    Passed to the kernel as a constant array, not as literals: TVM's C codegen prints float literals
    with 7 significant digits, which is not enough to round-trip a float32 (9 are needed)."""
    r_ac = np.float32(s_a) / np.float32(s_out)
    r_bc = np.float32(s_b) / np.float32(s_out)
    u = rq.ORT_U8_OFFSET
    fixed = rq.ort_add_fixed_part(r_ac, r_bc, zp_a + u, zp_b + u, zp_out + u)  # one FMA, as onnxruntime's build
    return np.array([r_ac, r_bc, fixed], dtype=np.float32)


def add(a, b, *fparams, zp_a: int, zp_b: int, s_a: float, s_b: float, s_out: float, r: Requant):
    """Requantizing elementwise add: TFLite's int8 add for "fixed"; for "float", MLAS QLinearAdd
    (AVX2 kernel) in x86's uint8 domain: fma(a, r_ac, fma(b, r_bc, fixed)), round half to even, saturate.
    `fparams` holds `add_float_params(...)` for "float" and is empty for "fixed"."""
    shape = tuple(int(d) for d in a.shape)
    if r.scheme == "fixed":
        twice_max = 2.0 * max(s_a, s_b)
        ma, sa = rq.quantize_multiplier(s_a / twice_max)
        mb, sb = rq.quantize_multiplier(s_b / twice_max)
        mo, so = rq.quantize_multiplier(twice_max / ((1 << rq.ADD_LEFT_SHIFT) * s_out))
        va = mbqm_tensor(
            shape, lambda *i: (a[i].astype("int32") - zp_a) * (1 << rq.ADD_LEFT_SHIFT), lambda i: ma, lambda i: sa, "a"
        )
        vb = mbqm_tensor(
            shape, lambda *i: (b[i].astype("int32") - zp_b) * (1 << rq.ADD_LEFT_SHIFT), lambda i: mb, lambda i: sb, "b"
        )
        return requant_out(shape, lambda *i: va[i] + vb[i], r, m_of=lambda i: mo, shift_of=lambda i: so)
    (p,) = fparams

    def f(*i):
        u = rq.ORT_U8_OFFSET  # uint8 domain, as x86 onnxruntime: codes + 128, and the zero points in p[2]
        t = tirx.call_pure_extern("float32", "fmaf", (b[i].astype("int32") + u).astype("float32"), p[1], p[2])
        t = tirx.call_pure_extern("float32", "fmaf", (a[i].astype("int32") + u).astype("float32"), p[0], t)
        t = tirx.max(tirx.min(t, tirx.const(float(r.hi + u), "float32")), tirx.const(float(r.lo + u), "float32"))
        return (tirx.nearbyint(t).astype("int32") - u).astype("int8")

    return te.compute(shape, f, name="out")


def max_pool(x, *, layout: str, in_nchw, out_nchw, kernel, stride, padding):
    """int8 max pool; padded positions never win (they read as −128)."""
    n, c, ih, iw = in_nchw
    _, _, oh, ow = out_nchw
    win = PoolWindow(kernel, stride, padding, (ih, iw))

    def f(*i):
        b, k, yy, xx = _nchw(layout, i)
        return win.reduce(te.max, yy, xx, lambda y, z: x[_index(layout, b, k, y, z)], tirx.const(-128, "int8"))

    return te.compute(_index(layout, n, c, oh, ow), f, name="out")


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
    r: Requant,
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
            te.sum, yy, xx, lambda y, z: x[_index(layout, b, k, y, z)].astype("int32"), tirx.const(zp_in, "int32")
        ),
        name="acc",
    )

    def pre(*i):
        return acc[_nchw(layout, i)] - zp_in * count

    shape = _index(layout, n, c, oh, ow)
    if r.scheme == "fixed":
        m, sh = rq.quantize_multiplier(s_in / (s_out * count))
        return requant_out(shape, pre, r, m_of=lambda i: m, shift_of=lambda i: sh)
    return requant_out(shape, pre, r, scale_of=lambda i: fparams[0][0])


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
            lambda y, z: fparams[0] * (x[_index(layout, b, k, y, z)].astype("int32") - zp_in).astype("float32"),
            tirx.const(0.0, "float32"),
        )

    acc = te.compute((n, c, oh, ow), acc_f, name="acc")

    def out_f(*i):
        u = rq.ORT_U8_OFFSET  # zp_out in x86 onnxruntime's uint8 domain: it is added before rounding
        v = tirx.nearbyint(acc[_nchw(layout, i)] / fparams[2] / fparams[1] + tirx.const(float(zp_out + u), "float32"))
        v = tirx.max(tirx.min(v, tirx.const(255.0, "float32")), tirx.const(0.0, "float32"))
        return (v.astype("int32") - u).astype("int8")

    return te.compute(_index(layout, n, c, oh, ow), out_f, name="out")


def reshape(x, *, shape: tuple[int, ...]):
    """Flatten/reshape as a copy in row-major order (same bytes, new shape)."""
    in_shape = [int(d) for d in x.shape]
    strides = [int(np.prod(in_shape[i + 1 :])) for i in range(len(in_shape))]
    out_strides = [int(np.prod(shape[i + 1 :])) for i in range(len(shape))]

    def f(*i):
        flat = sum(ix * s for ix, s in zip(i, out_strides))
        idx = [(flat // s) % d for s, d in zip(strides, in_shape)]
        return x[tuple(idx)]

    return te.compute(tuple(shape), f, name="out")
