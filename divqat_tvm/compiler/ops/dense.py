"""Fully connected layers: the ONNX/QDQ `Dense` (fixed-point or onnxruntime requantisation) and TFLite's
FULLY_CONNECTED (`TfliteDense`), each with its TE kernel and numpy reference; both run on the hand-written GEMM
(csrc/conv_s8.c over one 1x1 'pixel', ops/conv.py's constants), TFLite's with its own rounding.

`TfliteDense`: LiteRT's reference FC (reference_integer_ops::FullyConnected with float scales, what BUILTIN_REF
runs) does not use the fixed-point multiplier: it computes round(double(acc) · s_in·s_w/s_out) in double
precision, rounding half away from zero. The fixed-point form disagrees with it on about 2 % of outputs (checked
on MLPerf ResNet-8). The C kernel runs it as a proven integer multiplier (`f64_as_fixed`) or in double.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import native
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import Dense, Graph, Op
from divqat_tvm.compiler.native import NativeCall
from divqat_tvm.compiler.ops import common as C
from divqat_tvm.compiler.ops import conv


def claims(op: Op) -> bool:
    return isinstance(op, Dense)


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    """The input zero point folded into the bias (Σ(x−zp)·w = Σx·w − zp·Σw)."""
    if isinstance(op, TfliteDense):
        return op.te_kernel(graph, scheme)
    assert isinstance(op, Dense)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    bias = C.folded_bias(op.bias, op.weight, ti.zero_point, op.name).astype(np.int32)
    consts: list[np.ndarray] = [op.weight.astype(np.int8), bias, *C.requant_arrays(op, ti.scale, to.scale, scheme)]
    return dense, consts, dict(r=C.Requant(scheme, to.zero_point, op.act_min, op.act_max))


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    if isinstance(op, TfliteDense):
        return op.reference(graph, inputs, scheme)
    assert isinstance(op, Dense)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = np.asarray(inputs[0])
    x = x.reshape(x.shape[0], -1).astype(np.int64) - ti.zero_point
    acc = x @ op.weight.astype(np.int64).T + op.bias.astype(np.int64)
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    return C.requant_ref(
        acc, real, rq.conv_scale_f32(ti.scale, op.weight_scale, to.scale), to.zero_point, op.act_min, op.act_max, scheme
    )


def dense(x, w, bias, p0, *p1, r: C.Requant):
    """int8 fully connected [N, In] × [Out, In]ᵀ with per-output requantization."""
    n, k_in = (int(d) for d in x.shape)
    k_out = int(w.shape[0])
    rk = te.reduce_axis((0, k_in), "rk")
    acc = te.compute(
        (n, k_out), lambda b, o: te.sum(x[b, rk].astype("int32") * w[o, rk].astype("int32"), axis=rk), name="acc"
    )

    return C.requant_out(
        (n, k_out),
        lambda b, o: acc[b, o] + bias[o],
        r,
        m_of=lambda i: p0[i[1]],
        shift_of=lambda i: p1[0][i[1]],
        scale_of=lambda i: p0[i[1]],
    )


@dataclass
class TfliteDense(Dense):
    """FULLY_CONNECTED [N, In] × [Out, In]ᵀ requantized the way LiteRT's reference kernel does it."""

    @property
    def kind(self) -> str:
        return "dense"

    def effective_scales(self, graph: Graph) -> np.ndarray:
        """double(input scale) · double(filter scale[c]) / double(output scale), per output channel."""
        s_in, s_out = graph.tensors[self.inputs[0]].scale, graph.tensors[self.output].scale
        return (
            np.float64(np.float32(s_in))
            * self.weight_scale.astype(np.float32).astype(np.float64)
            / np.float64(np.float32(s_out))
        )

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        zp_in = graph.tensors[self.inputs[0]].zero_point
        bias = (self.bias.astype(np.int64) - zp_in * self.weight.astype(np.int64).sum(axis=1)).astype(np.int32)
        params = dict(zp_out=graph.tensors[self.output].zero_point, lo=self.act_min, hi=self.act_max)
        # float64 bit patterns as int32 (low, high) pairs: exact through any C emitter (relax.const turns
        # int64 arrays into int32, and a decimal float literal could round).
        scale_bits = self.effective_scales(graph).astype("<f8").view("<i4").copy()
        return dense_round_f64, [self.weight.astype(np.int8), bias, scale_bits], params

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        """Σ (x − zp_in)·w + bias, then round(double(acc) · scale) half away from zero, + zp_out, clamp."""
        zp_in = graph.tensors[self.inputs[0]].zero_point
        x = np.asarray(inputs[0], dtype=np.int64).reshape(len(inputs[0]), -1) - zp_in
        acc = x @ self.weight.astype(np.int64).T + self.bias.astype(np.int64)
        v = acc.astype(np.float64) * self.effective_scales(graph)[None, :]
        t = np.trunc(v)
        r = t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0.0)
        y = r.astype(np.int64) + graph.tensors[self.output].zero_point
        return np.clip(y, self.act_min, self.act_max).astype(np.int8)


def dense_round_f64(x, w, bias, scale_bits, *, zp_out: int, lo: int, hi: int):
    """TE: int8 FC with int32 accumulation (input zero point folded into `bias`), then LiteRT's reference
    requantization: round(double(acc) · scale[o]) half away from zero (trunc, then ±1 when |frac| ≥ ½,
    which is exact in double), + zp_out, clamp. `scale_bits` holds each float64 scale's bit pattern as
    two int32 words (low, high)."""
    n, k_in = (int(d) for d in x.shape)
    k_out = int(w.shape[0])
    rk = te.reduce_axis((0, k_in), "rk")
    acc = te.compute(
        (n, k_out), lambda b, o: te.sum(x[b, rk].astype("int32") * w[o, rk].astype("int32"), axis=rk), name="acc"
    )

    def out_f(b, o):
        bits = tirx.bitwise_or(
            tirx.shift_left(scale_bits[2 * o + 1].astype("int64"), tirx.const(32, "int64")),
            tirx.bitwise_and(scale_bits[2 * o].astype("int64"), tirx.const(0xFFFFFFFF, "int64")),
        )
        v = (acc[b, o] + bias[o]).astype("float64") * tirx.reinterpret("float64", bits)
        t = tirx.trunc(v)
        frac = v - t
        step = tirx.Select(
            frac >= 0.5,
            tirx.const(1.0, "float64"),
            tirx.Select(frac <= -0.5, tirx.const(-1.0, "float64"), tirx.const(0.0, "float64")),
        )
        r = tirx.max(tirx.min(t + step + float(zp_out), float(hi)), float(lo))
        return r.astype("int32").astype("int8")

    return te.compute((n, k_out), out_f, name="out")


# ---------------------------------------------------------------- the GEMM kernel (csrc/conv_s8.c)
def native_call(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    assert isinstance(op, Dense)
    return dense_call(graph, op, scheme)


def extra_candidates(graph: Graph, op: Op, scheme: str, call: NativeCall) -> dict[str, NativeCall]:
    return conv.gemm_variants(call)


BLOCKS: dict[str, dict[str, str]] = {}  # the GEMM's (ops/conv.py)


def dense_call(graph: Graph, op: Dense, scheme: str) -> NativeCall | None:
    """A fully connected layer as the GEMM kernel over one 1x1 'pixel': the fixed-point epilogue, or for TFLite's
    FULLY_CONNECTED (`effective_scales`) LiteRT's reference double rounding (DQ_F64)."""
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    if scheme != "fixed" or len(ti.shape) != 2 or ti.shape[0] != 1:
        return None
    cout, k = op.weight.shape
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    geom = dict(ih=1, iw=1, cin=k, oh=1, ow=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, pt=0, pl=0)
    call = conv.gemm_call(graph, op, op.weight, real, geom, True)
    if isinstance(op, TfliteDense):
        call = _f64_epilogue(call, op.effective_scales(graph), cout, to.zero_point, op.act_min, op.act_max)
    return call


def _f64_epilogue(call: NativeCall, scales: np.ndarray, cout: int, zp_out: int, lo: int, hi: int) -> NativeCall:
    """LiteRT's double rounding for a FULLY_CONNECTED: as a proven integer multiplier and shift (DQ_HAWAY:
    [bias', M, S − 32, 0]) when `f64_as_fixed` proves it equal for every scale of the layer, else the double
    computation itself (DQ_F64: [bias', float64 scale as (low, high) words, 0])."""
    qp = call.consts[1].reshape(-1, native.QP_WORDS).copy()
    n_max = max(hi - zp_out, zp_out - lo) + 1  # past this magnitude both sides clamp alike
    fixed = [f64_as_fixed(float(sc), n_max) for sc in np.asarray(scales, np.float64)]
    if all(f is not None for f in fixed):
        words = np.array([[m, s - 32] for m, s in fixed], dtype=np.int64)  # type: ignore[misc]
        words[:, 0] = np.where(words[:, 0] >= 2**31, words[:, 0] - 2**32, words[:, 0])  # M's bits as int32
        flag, epilogue = native.FLAG_HAWAY, "LiteRT FULLY_CONNECTED rounding as a proven 32-bit multiplier and shift"
    else:
        words = np.asarray(scales, "<f8").view("<i4").reshape(-1, 2).astype(np.int64)
        flag, epilogue = native.FLAG_F64, "float64 rounding (LiteRT reference FULLY_CONNECTED)"
    qp[:cout, 1:3] = words
    qp[cout:, 1:3] = words[-1]
    qp[:, 3] = 0
    desc = call.consts[2].copy()
    desc[native.DESC_FIELDS.index("flags")] = (desc[native.DESC_FIELDS.index("flags")] & ~native.FLAG_FAST) | flag
    return NativeCall(
        call.function,
        [call.consts[0], qp.reshape(-1), desc],
        call.scratch_bytes,
        call.out_shape,
        {**call.variant, "epilogue": epilogue},
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
