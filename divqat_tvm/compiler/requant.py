"""Requantization parameters and arithmetic, in numpy: the same integer math the C kernels do.

Two schemes, recorded in the manifest as `requant`:
- "fixed": TFLite / CMSIS-NN fixed point. A real multiplier becomes (int32 M, shift) with
  M·2^(shift−31) ≈ multiplier; applying it is SaturatingRoundingDoublingHighMul then
  RoundingDivideByPOT. Integer only, so it runs on FPU-less cores and gives the same bits everywhere.
- "float": onnxruntime's QLinear kernels (MLAS): a float32 multiply, round half to even, clamp.
  As onnxruntime runs them on x86: activations as uint8 (see ORT_U8_OFFSET).

The fixed-point arithmetic itself lives once, in `divqat_tvm.quant.primitives` (the quantizer's integer
math); this module gives it the names the compiler uses and adds the compiler-only pieces (the "float"
scheme, onnxruntime's uint8 offset, TFLite's add shift). Together they are the numpy reference the compiled
C is tested against; the TE kernels in `compiler/ops/` are written separately so that a mistake in one does
not hide in the other.
"""

from __future__ import annotations

import numpy as np

from divqat_tvm.quant.primitives import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    quantize_multiplier_np,
    rounding_divide_by_pot,
)
from divqat_tvm.quant.primitives import saturating_rounding_doubling_high_mul as srdhm

__all__ = [  # the fixed-point names are quant.primitives' functions, re-exported for the compiler
    "ADD_LEFT_SHIFT",
    "ORT_U8_OFFSET",
    "conv_scale_f32",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "quantize_multipliers",
    "round_half_even_f32",
    "rounding_divide_by_pot",
    "srdhm",
]

# onnxruntime on x86 runs int8 QDQ activations as uint8: its QDQS8ToU8Transformer rewrites each int8
# QuantizeLinear→DequantizeLinear pair to uint8 (codes and zero point + 128) because QDQIsInt8Allowed() is
# false off ARM. Integer kernels (QLinearConv, QGemm, QLinearGlobalAveragePool) add the zero point after
# rounding, so the offset cancels; QLinearAdd and QLinearAveragePool add it in float32 before rounding, where
# it changes the rounding (e.g. 26.500002 + 0 rounds to 27, 26.500002 − 128 is exactly −101.5 and rounds to
# −102). The "float" scheme computes those two in the uint8 domain, as x86 onnxruntime does.
ORT_U8_OFFSET = 128
ADD_LEFT_SHIFT = 20  # TFLite's int8 add: inputs are shifted left by 20 bits before rescaling


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel `quantize_multiplier` over the flattened `reals`: 1-D int32 arrays (M, shift)."""
    return quantize_multiplier_np(np.ravel(np.asarray(reals, dtype=np.float64)))


def round_half_even_f32(v: np.ndarray) -> np.ndarray:
    """Round float32 to nearest, ties to even (x86 cvtps2dq, C nearbyintf in the default mode)."""
    return np.rint(np.asarray(v, dtype=np.float32)).astype(np.int64)


def conv_scale_f32(s_in: float, s_w: np.ndarray, s_out: float) -> np.ndarray:
    """onnxruntime's QLinearConv/QGemm output scale: (x_scale · w_scale[k]) / y_scale, in float32."""
    return (np.float32(s_in) * np.asarray(s_w, dtype=np.float32)) / np.float32(s_out)


def fma_f32(a: float | np.floating, b: float | np.floating, c: float | np.floating) -> np.float32:
    """C's fmaf(a, b, c) on float32 values: a·b + c computed exactly, rounded once to float32 (nearest, ties to
    even), as the FMA instructions do. Exact rational arithmetic, so no double rounding."""
    from fractions import Fraction

    exact = Fraction(float(np.float32(a))) * Fraction(float(np.float32(b))) + Fraction(float(np.float32(c)))
    guess = np.float32(float(exact))
    if not np.isfinite(guess):
        return guess
    cands = (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf)))
    best_err, best = abs(Fraction(float(cands[0])) - exact), cands[0]
    for cand in cands[1:]:
        err = abs(Fraction(float(cand)) - exact)
        even = int(np.asarray(cand, np.float32).view(np.uint32)) % 2 == 0
        if err < best_err or (err == best_err and even):
            best_err, best = err, cand
    return np.float32(best)


def ort_add_fixed_part(r_ac: np.float32, r_bc: np.float32, zp_a: int, zp_b: int, zp_out: int) -> np.float32:
    """MLAS QLinearAdd's constant term ZeroPointC − (ScaleRatio_AC·ZeroPointA + ScaleRatio_BC·ZeroPointB), as the
    compiled onnxruntime computes it: the inner sum contracted to one FMA, fma(r_ac, zp_a, r_bc·zp_b) (found
    against onnxruntime over all int8 pairs; the separately rounded form is off by one on some scale pairs).
    Zero points as passed (x86: the uint8 domain, + ORT_U8_OFFSET)."""
    inner = fma_f32(r_ac, np.float32(zp_a), np.float32(r_bc) * np.float32(zp_b))
    return np.float32(np.float32(zp_out) - inner)
