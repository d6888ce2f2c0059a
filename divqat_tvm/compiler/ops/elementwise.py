"""Elementwise operators: the requantising ADD (TFLite's int8 ADD, or onnxruntime's QLinearAdd), MUL with numpy
broadcasting, and any function of one int8 code as a 256-entry table (`Lut`: Sigmoid, Tanh, HardSigmoid,
HardSwish, a kept Relu/Clip, a change of scale). Each with its TE kernel, its numpy reference and, for the ADD,
its hand-written kernel (csrc/add_s8.c).

- `Lut`: the table is built offline as onnxruntime builds or computes it (Sigmoid: its QLinearSigmoid table,
  MLAS's logistic; Tanh, HardSigmoid, HardSwish: its float kernels between DequantizeLinear and QuantizeLinear;
  a kept Relu/Clip or a change of scale: QuantizeLinear of the value).
- `Mul`: onnxruntime's QLinearMul ("float") or TFLite's MUL ("fixed").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import native
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import QMAX, QMIN, Add, Graph, Op
from divqat_tvm.compiler.native import NativeCall
from divqat_tvm.compiler.ops import common as C


def claims(op: Op) -> bool:
    return isinstance(op, (Add, Mul, Lut))


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    if isinstance(op, (Mul, Lut)):
        return op.te_kernel(graph, scheme)
    assert isinstance(op, Add)
    ta, tb, to = (graph.tensors[n] for n in (*op.inputs[:2], op.output))
    fp = (
        []
        if scheme == "fixed"
        else [add_float_params(ta.zero_point, tb.zero_point, ta.scale, tb.scale, to.scale, to.zero_point)]
    )
    params = dict(
        zp_a=ta.zero_point,
        zp_b=tb.zero_point,
        s_a=ta.scale,
        s_b=tb.scale,
        s_out=to.scale,
        r=C.Requant(scheme, to.zero_point, op.act_min, op.act_max),
    )
    return add, fp, params


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    if isinstance(op, (Mul, Lut)):
        return op.reference(graph, inputs, scheme)
    assert isinstance(op, Add)
    ta, tb, to = (graph.tensors[n] for n in (*op.inputs, op.output))
    a = np.asarray(inputs[0]).astype(np.int64)
    b = np.asarray(inputs[1]).astype(np.int64)
    if scheme == "fixed":
        twice_max = 2.0 * max(ta.scale, tb.scale)
        ma, sa = rq.quantize_multiplier(ta.scale / twice_max)
        mb, sb = rq.quantize_multiplier(tb.scale / twice_max)
        mo, so = rq.quantize_multiplier(twice_max / ((1 << rq.ADD_LEFT_SHIFT) * to.scale))
        sa_ = rq.multiply_by_quantized_multiplier((a - ta.zero_point) << rq.ADD_LEFT_SHIFT, ma, sa)
        sb_ = rq.multiply_by_quantized_multiplier((b - tb.zero_point) << rq.ADD_LEFT_SHIFT, mb, sb)
        v = rq.multiply_by_quantized_multiplier(sa_ + sb_, mo, so) + to.zero_point
    else:
        u = rq.ORT_U8_OFFSET  # x86 onnxruntime adds in the uint8 domain: codes and zero points + 128
        r_ac = np.float32(ta.scale) / np.float32(to.scale)
        r_bc = np.float32(tb.scale) / np.float32(to.scale)
        fixed = rq.ort_add_fixed_part(r_ac, r_bc, ta.zero_point + u, tb.zero_point + u, to.zero_point + u)
        # MLAS (AVX2): fma(a, r_ac, fma(b, r_bc, fixed)); the products of small ints are exact in float64.
        # long double (64-bit mantissa on x86) holds a·r + t exactly here, so one rounding to float32, as fmaf
        ld = np.longdouble
        t = ((b + u).astype(ld) * ld(r_bc) + ld(fixed)).astype(np.float32)
        t = ((a + u).astype(ld) * ld(r_ac) + t.astype(ld)).astype(np.float32)
        v = rq.round_half_even_f32(t) - u
    return np.clip(v, op.act_min, op.act_max)


def native_call(graph: Graph, op: Op, scheme: str) -> NativeCall | None:
    """csrc/add_s8.c for TFLite's ADD where its arithmetic applies; every other op keeps its TE kernel."""
    return add_call(graph, op, scheme) if isinstance(op, Add) else None


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


def add(a, b, *fparams, zp_a: int, zp_b: int, s_a: float, s_b: float, s_out: float, r: C.Requant):
    """Requantizing elementwise add: TFLite's int8 add for "fixed"; for "float", MLAS QLinearAdd
    (AVX2 kernel) in x86's uint8 domain: fma(a, r_ac, fma(b, r_bc, fixed)), round half to even, saturate.
    `fparams` holds `add_float_params(...)` for "float" and is empty for "fixed"."""
    shape = tuple(int(d) for d in a.shape)
    if r.scheme == "fixed":
        twice_max = 2.0 * max(s_a, s_b)
        ma, sa = rq.quantize_multiplier(s_a / twice_max)
        mb, sb = rq.quantize_multiplier(s_b / twice_max)
        mo, so = rq.quantize_multiplier(twice_max / ((1 << rq.ADD_LEFT_SHIFT) * s_out))
        va = C.mbqm_tensor(
            shape, lambda *i: (a[i].astype("int32") - zp_a) * (1 << rq.ADD_LEFT_SHIFT), lambda i: ma, lambda i: sa, "a"
        )
        vb = C.mbqm_tensor(
            shape, lambda *i: (b[i].astype("int32") - zp_b) * (1 << rq.ADD_LEFT_SHIFT), lambda i: mb, lambda i: sb, "b"
        )
        return C.requant_out(shape, lambda *i: va[i] + vb[i], r, m_of=lambda i: mo, shift_of=lambda i: so)
    (p,) = fparams

    def f(*i):
        u = rq.ORT_U8_OFFSET  # uint8 domain, as x86 onnxruntime: codes + 128, and the zero points in p[2]
        t = tirx.call_pure_extern("float32", "fmaf", (b[i].astype("int32") + u).astype("float32"), p[1], p[2])
        t = tirx.call_pure_extern("float32", "fmaf", (a[i].astype("int32") + u).astype("float32"), p[0], t)
        t = tirx.max(tirx.min(t, tirx.const(float(r.hi + u), "float32")), tirx.const(float(r.lo + u), "float32"))
        return (tirx.nearbyint(t).astype("int32") - u).astype("int8")

    return te.compute(shape, f, name="out")


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
    fast = mo > (1 << 30) and 1 <= ao <= native.FAST_MAX_SHIFT
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


BLOCKS = {"divqat_add_s8": {"dsp": "1 element (SMMLAR)", "mve": "4 elements (VQRDMULH, VRSHL)", "c": "1 element (C)"}}


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

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        return lut, [np.asarray(self.table, np.int8)], {}

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        return np.asarray(self.table, np.int8)[np.asarray(inputs[0]).astype(np.int64) + 128]


def lut(x, table):
    """TE: out = table[x + 128]."""
    return te.compute(tuple(x.shape), lambda *i: table[x[i].astype("int32") + 128], name="out")


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

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        ta, tb, to = (graph.tensors[n] for n in (*self.inputs, self.output))
        common: dict[str, Any] = dict(
            zp_a=ta.zero_point, zp_b=tb.zero_point, zp_out=to.zero_point, lo=self.act_min, hi=self.act_max
        )
        if scheme == "fixed":
            m, s = rq.quantize_multiplier(float(np.float64(ta.scale) * np.float64(tb.scale) / np.float64(to.scale)))
            return mul_fixed, [], {**common, "mult": int(m), "shift": int(s)}
        return mul_float, [np.array([self._ratio_f32(graph)], np.float32)], common

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
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
    r = C.Requant("fixed", zp_out, lo, hi)
    return C.requant_out(shape, prod, r, m_of=lambda i: mult, shift_of=lambda i: shift)


def mul_float(a, b, ratio, *, zp_a: int, zp_b: int, zp_out: int, lo: int, hi: int):
    """TE: onnxruntime QLinearMul: float32 product × ratio, round half to even, + zp_out, saturate."""
    shape, prod = _mul_product(a, b, zp_a, zp_b)
    lo_f = tirx.const(float(lo - zp_out), "float32")
    hi_f = tirx.const(float(hi - zp_out), "float32")

    def f(*i):
        v = prod(*i).astype("float32") * ratio[0]
        return (tirx.nearbyint(tirx.max(tirx.min(v, hi_f), lo_f)).astype("int32") + zp_out).astype("int8")

    return te.compute(shape, f, name="out")
