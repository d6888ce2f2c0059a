"""The int8 arithmetic in one place: qparams, quantize/dequantize, int32 bias, fixed-point requantization.

Convention (TFLite / CMSIS-NN int8): weights per-channel symmetric in [-127, 127] with zero point 0;
activations per-tensor asymmetric in [-128, 127] with a range that always contains 0 (so 0.0 — padding,
ReLU's floor — is exactly representable); bias int32 with scale s_in * s_w[c] and zero point 0; requantization
of the int32 accumulator by a fixed-point multiplier and shift (`quantize_multiplier`,
`saturating_rounding_doubling_high_mul`, `rounding_divide_by_pot`), which is what the C kernels do.

Every function here has a numpy form (the reference the compiler's C output is checked against) and, where
training needs it, a torch form with identical rounding: round half to even, division by the scale (not
multiplication by its reciprocal), float32 scales — the same as onnxruntime's QuantizeLinear.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: smallest scale we ever emit: guards all-zero channels and constant activations
MIN_SCALE = 1e-8


# ----------------------------------------------------------------------------------------------- qparams


def weight_scales_np(w: np.ndarray, axis: int = 0, qmax: int = WEIGHT_QMAX) -> np.ndarray:
    """Per-channel symmetric scales: max|w| over every axis but `axis`, divided by qmax (float32)."""
    w = np.asarray(w, dtype=np.float32)
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=red) if red else np.abs(w)
    return np.maximum(amax / np.float32(qmax), np.float32(MIN_SCALE)).astype(np.float32)


def weight_scales(w: torch.Tensor, axis: int = 0, qmax: int = WEIGHT_QMAX) -> torch.Tensor:
    """Torch twin of `weight_scales_np` (no gradient flows into the scale)."""
    red = [i for i in range(w.dim()) if i != axis]
    amax = w.detach().abs().amax(dim=red) if red else w.detach().abs()
    return torch.clamp(amax / qmax, min=MIN_SCALE).to(torch.float32)


def activation_qparams_np(lo: float, hi: float, qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[np.float32, int]:
    """Per-tensor asymmetric (scale, zero_point) for the range [lo, hi], widened to contain 0.

    The zero point is rounded and clamped into [qmin, qmax], so 0.0 maps exactly onto an integer. A range
    that starts at 0 (a ReLU output) gets zero point qmin, which is what lets the int8 clamp be the ReLU.
    """
    lo = min(float(lo), 0.0)
    hi = max(float(hi), 0.0)
    scale = np.float32(max((hi - lo) / float(qmax - qmin), MIN_SCALE))
    zp = int(np.clip(qmin - np.round(np.float32(lo) / scale), qmin, qmax))
    return scale, zp


def activation_qparams(
    lo: torch.Tensor, hi: torch.Tensor, qmin: int = INT8_MIN, qmax: int = INT8_MAX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of `activation_qparams_np`: float32 scale and int32 zero point as 0-d tensors."""
    lo = torch.clamp(lo.detach().to(torch.float32), max=0.0)
    hi = torch.clamp(hi.detach().to(torch.float32), min=0.0)
    scale = torch.clamp((hi - lo) / float(qmax - qmin), min=MIN_SCALE)
    zp = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zp


# -------------------------------------------------------------------------------- quantize / dequantize


def _qparams_along(
    scale: np.ndarray | np.floating[Any] | float, zero_point: np.ndarray | int, ndim: int, axis: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 scale and int64 zero point, shaped to broadcast along `axis` of an ndim-array (per channel), or
    as given (per tensor) when `axis` is None."""
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zero_point, dtype=np.int64)
    if axis is None:
        return scale, zp
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape), zp.reshape(shape)


def quantize_np(
    x: np.ndarray,
    scale: np.ndarray | np.floating[Any] | float,
    zero_point: np.ndarray | int,
    qmin: int,
    qmax: int,
    axis: int | None = None,
    dtype: type = np.int8,
) -> np.ndarray:
    """clamp(round_half_even(x / scale) + zp, qmin, qmax); per-channel along `axis` when given."""
    x = np.asarray(x, dtype=np.float32)
    scale, zp = _qparams_along(scale, zero_point, x.ndim, axis)
    q = np.round(x / scale).astype(np.int64) + zp
    return np.clip(q, qmin, qmax).astype(dtype)


def dequantize_np(
    q: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, axis: int | None = None
) -> np.ndarray:
    """(q - zp) * scale in float32; per-channel along `axis` when given."""
    q = np.asarray(q).astype(np.int64)
    scale, zp = _qparams_along(scale, zero_point, q.ndim, axis)
    return ((q - zp).astype(np.float32) * scale).astype(np.float32)


def _bcast(t: torch.Tensor, ndim: int, axis: int | None) -> torch.Tensor:
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


def quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, axis: int | None = None
) -> torch.Tensor:
    """Torch twin of `quantize_np`, returning int64 codes (exact for int8 and int32 ranges)."""
    s = _bcast(scale.to(torch.float32), x.dim(), axis)
    z = _bcast(zero_point.to(torch.int64), x.dim(), axis)
    q = torch.round(x.to(torch.float32) / s).to(torch.int64) + z
    return torch.clamp(q, qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Torch twin of `dequantize_np`."""
    s = _bcast(scale.to(torch.float32), q.dim(), axis)
    z = _bcast(zero_point.to(torch.int64), q.dim(), axis)
    return (q.to(torch.int64) - z).to(torch.float32) * s


def bias_scale_np(s_in: float, s_w: np.ndarray) -> np.ndarray:
    """The int32 bias scale s_in * s_w[c], computed in float32 as onnxruntime and the kernels see it."""
    return (np.float32(s_in) * np.asarray(s_w, dtype=np.float32)).astype(np.float32)


def quantize_bias_np(b: np.ndarray, s_in: float, s_w: np.ndarray) -> np.ndarray:
    """int32 bias: round_half_even(b / (s_in * s_w)), saturated to int32."""
    return quantize_np(b, bias_scale_np(s_in, s_w), 0, INT32_MIN, INT32_MAX, dtype=np.int32)


# ------------------------------------------------------------------------- fixed-point requantization


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier an int32 in [2^30, 2^31).

    Returns:
        (multiplier, shift) with shift > 0 meaning a left shift (TFLite/CMSIS-NN sign convention).
        A zero multiplier gives (0, 0); one too small for a 31-bit right shift flushes to (0, 0) as TFLite does.
    """
    if real_multiplier == 0.0:
        return 0, 0
    if real_multiplier < 0.0 or not math.isfinite(real_multiplier):
        raise ValueError(f"requantization multiplier must be finite and non-negative, got {real_multiplier!r}")
    frac, shift = math.frexp(real_multiplier)  # real = frac * 2^shift, frac in [0.5, 1)
    q = math.floor(frac * (1 << 31) + 0.5)  # TfLiteRound (std::round, ties away from zero); the product is exact
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"requantization multiplier {real_multiplier!r} is too large for int32 fixed point")
    return int(q), int(shift)


def quantize_multiplier_np(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `quantize_multiplier` for per-channel multipliers: (int32 multipliers, int32 shifts)."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(real, dtype=np.float64).ravel()]
    m = np.array([p[0] for p in pairs], dtype=np.int32).reshape(np.shape(real))
    s = np.array([p[1] for p in pairs], dtype=np.int32).reshape(np.shape(real))
    return m, s


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32: high 32 bits of 2·a·b, rounded to nearest.

    The one overflow case, a == b == INT32_MIN, saturates to INT32_MAX. Rounding adds 2^30 to a non-negative
    product and 1 - 2^30 to a negative one, then truncates toward zero (C's integer division).

    Returns:
        int32 values as int64 (broadcast over a and b), so that a caller's further sums do not wrap silently.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # exact: |a·b| <= 2^62
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = ab + nudge
    # C-style truncating division by 2^31
    hi = np.where(num >= 0, num >> 31, -((-num) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), hi).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero.

    gemmlowp takes exponents in [0, 31]; larger ones (TFLite's softmax asks for them when the exponentials
    sum past 2^8) are computed exactly on the int64 values. Returns int64.
    """
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 62)):
        raise ValueError("rounding_divide_by_pot needs an exponent in [0, 62]")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return ((x >> e) + (remainder > threshold).astype(np.int64)).astype(np.int64)


def multiply_by_quantized_multiplier(
    x: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier: x · multiplier · 2^(shift-31) with gemmlowp rounding.

    A left shift (shift > 0) saturates to int32 as CMSIS-NN does (TFLite's reference leaves that overflow
    undefined). int32 values in and out, as int64 arrays (broadcast over x, multiplier and shift).
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    shifted = np.clip(x * (np.int64(1) << left), INT32_MIN, INT32_MAX)  # CMSIS-NN saturates the left shift
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def requantize_np(
    acc: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    out_zero_point: int,
    act_min: int = INT8_MIN,
    act_max: int = INT8_MAX,
    axis: int | None = None,
) -> np.ndarray:
    """int32 accumulator → int8 output: fixed-point rescale, add the output zero point, clamp.

    Args:
        acc: int32 accumulators (bias already added).
        multiplier, shift: from `quantize_multiplier_np(s_in * s_w / s_out)`, per channel along `axis`.
        out_zero_point: the output activation's zero point.
        act_min, act_max: the clamp; a fused ReLU is act_min = out_zero_point.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if axis is not None and m.ndim:
        shape = [1] * acc.ndim
        shape[axis] = -1
        m, s = m.reshape(shape), s.reshape(shape)
    y = multiply_by_quantized_multiplier(acc, m, s).astype(np.int64) + out_zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)
