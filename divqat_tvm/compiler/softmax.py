"""int8 softmax with TFLite's reference-kernel semantics: numpy reference, parameters and TE kernel.

TFLite (tensorflow/lite/kernels/internal/reference/softmax.h, the kernel LiteRT's BUILTIN_REF resolver and
TFLite Micro both run) computes an int8 softmax entirely in fixed point:

1. ``diff = x − max(row)`` (int, ≤ 0); entries with ``diff < diff_min`` count as exp = 0;
2. ``diff`` is rescaled to Q5.26 by ``input_multiplier`` / ``input_left_shift`` (beta · input scale);
3. ``exp`` of it by gemmlowp's ``exp_on_negative_values`` (Q0.31), summed in Q12.19;
4. the reciprocal of the sum by gemmlowp's Newton–Raphson ``one_over_one_plus_x_for_x_in_0_1``;
5. each output is ``RoundingDivideByPOT(recip · exp, num_bits_over_unit + 23) − 128``, clamped.

Because the input is int8, step 2–3 depend on ``diff`` ∈ [−255, 0] only: the compiled kernel reads them
from a 256-entry int32 table built here by the numpy fixed-point code below (the table is a pure function
of the model's quantization, like TFLite's own optimized kernel's). Steps 1, 4 and 5 run in the kernel.
Every helper mirrors one gemmlowp/TFLite function of the same name, on int64 numpy arrays that hold
int32 values (wrapping where C wraps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import requant as rq
from divqat_tvm.errors import CompileError

INT32_MAX = 2**31 - 1
SCALED_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits: exp's input is Q5.26
ACCUM_INTEGER_BITS = 12  # kAccumulationIntegerBits: the sum of exps is Q12.19
TABLE_SIZE = 256  # diff ∈ [−255, 0] for int8 inputs
OUTPUT_SCALE = 1.0 / 256  # TFLite requires these for an int8 softmax output
OUTPUT_ZERO_POINT = -128


@dataclass(frozen=True)
class SoftmaxParams:
    """What TFLite's SoftmaxPrepare computes for an int8 input."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(beta: float, input_scale: float) -> SoftmaxParams:
    """PreprocessSoftmaxScaling + CalculateInputRadius (non-single-rounding build), in double like TFLite."""
    real = min(float(beta) * float(input_scale) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float(INT32_MAX))
    if not real > 1.0:
        raise CompileError(f"softmax beta·input_scale = {float(beta) * float(input_scale):.3g} is too small for "
                           "TFLite's fixed-point softmax (QuantizeMultiplierGreaterThanOne needs > 1).",
                           "Re-quantize the model with a larger scale on the softmax input.")
    m, shift = rq.quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS))
                        / (1 << shift))
    return SoftmaxParams(int(m), int(shift), -int(radius))


# ---------------------------------------------------------------- gemmlowp fixed point, numpy
def _wrap32(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 (what C's int32 add/sub does on these CPUs)."""
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31


def _srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return rq.srdhm(a, b)


def _rdbp(x: np.ndarray, exponent: int) -> np.ndarray:
    return rq.rounding_divide_by_pot(x, exponent)


def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    x = np.asarray(x, dtype=np.int64)
    if exponent < 0:
        return _rdbp(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, -(2**31), x << exponent))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) for a ∈ [−1/4, 0), Q0.31 in and out (Taylor expansion around −1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    poly = _sat_mul_pot(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap32(constant_term + _srdhm(constant_term, _wrap32(x + poly)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int = SCALED_DIFF_INTEGER_BITS) -> np.ndarray:
    """gemmlowp: exp(a) for a ≤ 0 given as Q(integer_bits) raw int32; result Q0.31 raw."""
    a = np.asarray(a, dtype=np.int64)
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = _wrap32((a & (quarter - 1)) - quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(_sat_mul_pot(a_mod, integer_bits))
    remainder = _wrap32(a_mod - a)
    for exponent, multiplier in _BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: 1/(1+a) for a ∈ [0, 1), Q0.31 in and out (three Newton–Raphson steps in Q2.29)."""
    a = np.asarray(a, dtype=np.int64)
    s = a + INT32_MAX
    half_den = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # RoundingHalfSum: (sum ± 1) / 2, C division
    x = _wrap32(1515870810 + _srdhm(half_den, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half_den, x))
        x = _wrap32(x + _sat_mul_pot(_srdhm(x, one_minus), 2))
    return _sat_mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x))


def count_leading_zeros(x: np.ndarray) -> np.ndarray:
    """CountLeadingZeros of uint32 values (32 for 0)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    bits = np.zeros_like(x)
    for b in range(32):
        bits = np.where(x >= (1 << b), b + 1, bits)
    return 32 - bits


def get_reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 reciprocal-ish scale, num_bits_over_unit) of a positive Q(integer_digits)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted_minus_one = _wrap32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit


def exp_table(p: SoftmaxParams) -> np.ndarray:
    """int32 [256]: entry d = exp_on_negative_values(rescaled(−d)) in Q0.31, or 0 where −d < diff_min."""
    diff = -np.arange(TABLE_SIZE, dtype=np.int64)
    keep = diff >= p.diff_min
    shifted = _wrap32(np.where(keep, diff, 0) * (1 << p.input_left_shift))  # MultiplyByQuantizedMultiplierGreaterThanOne
    scaled = _srdhm(shifted, p.input_multiplier)
    return np.where(keep, exp_on_negative_values(scaled), 0).astype(np.int32)


def softmax_int8_reference(x: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """TFLite's int8 → int8 softmax over the last axis, computed the reference kernel's way (no table)."""
    x = np.asarray(x, dtype=np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    keep = diff >= p.diff_min
    scaled = _srdhm(_wrap32(np.where(keep, diff, 0) * (1 << p.input_left_shift)), p.input_multiplier)
    e = np.where(keep, exp_on_negative_values(scaled), 0)
    total = _wrap32(np.where(keep, _sat_mul_pot(e, -ACCUM_INTEGER_BITS), 0).sum(axis=-1, keepdims=True))
    scale, bits = get_reciprocal(total, ACCUM_INTEGER_BITS)
    exponent = bits + 31 - 8
    out = rq.rounding_divide_by_pot(_srdhm(scale, e), exponent) - 128
    return np.where(keep, np.clip(out, -128, 127), -128).astype(np.int8)


# ---------------------------------------------------------------- the TE kernel
def _srdhm_te(a, b):
    """SaturatingRoundingDoublingHighMul on int32 PrimExprs (never both INT32_MIN here: b is a positive scale)."""
    ab = a.astype("int64") * b.astype("int64")
    s = ab + tirx.Select(ab >= 0, tirx.const(1 << 30, "int64"), tirx.const(1 - (1 << 30), "int64"))
    return tirx.Select(s >= 0, tirx.shift_right(s, tirx.const(31, "int64")),
                       -tirx.shift_right(-s, tirx.const(31, "int64"))).astype("int32")


def _rdbp_te(x, exponent):
    """RoundingDivideByPOT on an int32 PrimExpr by an int32 PrimExpr or int exponent."""
    e = exponent if not isinstance(exponent, int) else tirx.const(exponent, "int32")
    mask = tirx.shift_left(tirx.const(1, "int32"), e) - 1
    thr = tirx.shift_right(mask, tirx.const(1, "int32")) + tirx.Select(x < 0, tirx.const(1, "int32"), tirx.const(0, "int32"))
    return tirx.shift_right(x, e) + tirx.Select(tirx.bitwise_and(x, mask) > thr, tirx.const(1, "int32"), tirx.const(0, "int32"))


def _sat_shift_left_te(x, exponent: int):
    """SaturatingRoundingMultiplyByPOT<exponent > 0> on an int32 PrimExpr."""
    threshold = (1 << (31 - exponent)) - 1
    return tirx.Select(x > threshold, tirx.const(INT32_MAX, "int32"),
                       tirx.Select(x < -threshold, tirx.const(-(2**31), "int32"), tirx.shift_left(x, tirx.const(exponent, "int32"))))


def _reciprocal_te(total, clz):
    """GetReciprocal's Q0.31 scale from the int32 sum and its leading-zero count (PrimExprs)."""
    shifted = tirx.shift_left(total.astype("int64"), clz.astype("int64")) - (1 << 31)
    a = shifted.astype("int32")
    half_den = tirx.shift_right(a.astype("int64") + (1 << 31), tirx.const(1, "int64")).astype("int32")  # a ≥ 0
    x = tirx.const(1515870810, "int32") + _srdhm_te(half_den, tirx.const(-1010580540, "int32"))
    for _ in range(3):
        one_minus = tirx.const(1 << 29, "int32") - _srdhm_te(half_den, x)
        x = x + _sat_shift_left_te(_srdhm_te(x, one_minus), 2)
    return _sat_shift_left_te(x, 1)


def softmax(x, table):
    """int8 softmax over the last axis of `x`; `table` is `exp_table(params)` (int32 [256]).

    Stages: row max, Σ Rescale<12>(exp), count of leading zeros of the sum (as Σ_b [sum < 2^b]), then
    the output, which computes the reciprocal inline (the row is ≤ a few dozen entries).
    """
    shape = tuple(int(d) for d in x.shape)
    outer, depth = shape[:-1], shape[-1]
    rk = te.reduce_axis((0, depth), "rk")
    row_max = te.compute(outer, lambda *o: te.max(x[(*o, rk)], axis=rk), name="row_max")
    rs = te.reduce_axis((0, depth), "rs")

    def exp_of(o, k):
        return table[(row_max[o].astype("int32") - x[(*o, k)].astype("int32"))]

    total = te.compute(outer, lambda *o: te.sum(_rdbp_te(exp_of(o, rs), ACCUM_INTEGER_BITS), axis=rs), name="sum_of_exps")
    rb = te.reduce_axis((0, 32), "rb")
    clz = te.compute(outer, lambda *o: te.sum(tirx.Select(total[o].astype("int64") < tirx.shift_left(tirx.const(1, "int64"), rb.astype("int64")),
                                                          tirx.const(1, "int32"), tirx.const(0, "int32")), axis=rb), name="clz")

    def out_f(*i):
        o = i[:-1]
        recip = _reciprocal_te(total[o], clz[o])
        exponent = (ACCUM_INTEGER_BITS + 31 - 8) - clz[o]
        v = _rdbp_te(_srdhm_te(recip, exp_of(o, i[-1])), exponent) - 128
        return tirx.max(tirx.min(v, 127), -128).astype("int8")

    return te.compute(shape, out_f, name="out")
