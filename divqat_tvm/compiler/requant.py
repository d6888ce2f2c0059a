"""Requantization parameters and arithmetic, in numpy: the same integer math the C kernels do.

Two schemes, recorded in the manifest as `requant`:
- "fixed": TFLite / CMSIS-NN fixed point. A real multiplier becomes (int32 M, shift) with
  M·2^(shift−31) ≈ multiplier; applying it is SaturatingRoundingDoublingHighMul then
  RoundingDivideByPOT. Integer only, so it runs on FPU-less cores and gives the same bits everywhere.
- "float": onnxruntime's QLinear kernels (MLAS): a float32 multiply, round half to even, clamp.
  As onnxruntime runs them on x86: activations as uint8 (see ORT_U8_OFFSET).

These functions are the numpy reference the compiled C is tested against; the TE kernels in
`kernels.py` are written separately so that a mistake in one does not hide in the other.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
# onnxruntime on x86 runs int8 QDQ activations as uint8: its QDQS8ToU8Transformer rewrites each int8
# QuantizeLinear→DequantizeLinear pair to uint8 (codes and zero point + 128) because QDQIsInt8Allowed() is
# false off ARM. Integer kernels (QLinearConv, QGemm, QLinearGlobalAveragePool) add the zero point after
# rounding, so the offset cancels; QLinearAdd and QLinearAveragePool add it in float32 before rounding, where
# it changes the rounding (e.g. 26.500002 + 0 rounds to 27, 26.500002 − 128 is exactly −101.5 and rounds to
# −102). The "float" scheme computes those two in the uint8 domain, as x86 onnxruntime does.
ORT_U8_OFFSET = 128
ADD_LEFT_SHIFT = 20  # TFLite's int8 add: inputs are shifted left by 20 bits before rescaling


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (M, shift) with M in [2^30, 2^31) and real ≈ M·2^(shift−31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q > 0 else -1)  # std::round: half away from 0
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"requantization multiplier {real} is too large for int32 fixed point")
    return q_fixed, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel `quantize_multiplier`: int32 arrays (M, shift)."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int32), np.array([p[1] for p in pairs], dtype=np.int32))


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 arrays (broadcasting)."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    ab = a64 * b64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    res = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division truncates toward zero
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, 2**31 - 1, res).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: divide by 2^exponent, rounding half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, m: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (int32 in, int32 out; shift > 0 is a left shift, saturated to
    int32 as CMSIS-NN does; TFLite's reference leaves that overflow undefined)."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = np.clip(np.asarray(x, dtype=np.int64) * (np.int64(1) << left), INT32_MIN, 2**31 - 1)  # saturating (CMSIS-NN)
    return rounding_divide_by_pot(srdhm(shifted, m), right)


def round_half_even_f32(v: np.ndarray) -> np.ndarray:
    """Round float32 to nearest, ties to even (x86 cvtps2dq, C nearbyintf in the default mode)."""
    return np.rint(np.asarray(v, dtype=np.float32)).astype(np.int64)


def conv_scale_f32(s_in: float, s_w: np.ndarray, s_out: float) -> np.ndarray:
    """onnxruntime's QLinearConv/QGemm output scale: (x_scale · w_scale[k]) / y_scale, in float32."""
    return (np.float32(s_in) * np.asarray(s_w, dtype=np.float32)) / np.float32(s_out)
