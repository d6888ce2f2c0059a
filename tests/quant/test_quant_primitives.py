"""Integer math against hand-computed cases (TFLite / gemmlowp semantics) and numpy == torch."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from divqat_tvm.quant import primitives as P


def test_quantize_rounds_half_to_even_and_clamps() -> None:
    x = np.array([0.25, 0.75, 1.25, -0.25, -0.75, 100.0, -100.0], dtype=np.float32)
    q = P.quantize_np(x, 0.5, 0, P.INT8_MIN, P.INT8_MAX)
    assert q.tolist() == [0, 2, 2, 0, -2, 127, -128]
    assert q.dtype == np.int8
    q = P.quantize_np(x, 0.5, 10, P.INT8_MIN, P.INT8_MAX)
    assert q.tolist() == [10, 12, 12, 10, 8, 127, -128]
    assert P.dequantize_np(np.array([12, 8], np.int8), 0.5, 10).tolist() == [1.0, -1.0]


def test_per_channel_weights_symmetric_127() -> None:
    w = np.array([[[[1.27, -0.5]]], [[[-2.54, 0.02]]]], dtype=np.float32)  # [2,1,1,2]
    s = P.weight_scales_np(w)
    np.testing.assert_allclose(s, [0.01, 0.02], rtol=1e-6)
    q = P.quantize_np(w, s, 0, P.WEIGHT_QMIN, P.WEIGHT_QMAX, axis=0)
    assert q.reshape(2, 2).tolist() == [[127, -50], [-127, 1]]
    assert P.weight_scales_np(np.zeros((3, 2), np.float32)).tolist() == [np.float32(P.MIN_SCALE)] * 3


def test_activation_qparams_include_zero() -> None:
    s, z = P.activation_qparams_np(-1.0, 3.0)
    assert s == np.float32(4.0 / 255.0) and z == -64  # -1 / (4/255) = -63.75 -> -64 -> zp = -128 + 64
    s, z = P.activation_qparams_np(0.5, 2.55)  # no zero in range: widened to [0, 2.55]
    assert s == np.float32(0.01) and z == -128
    s, z = P.activation_qparams_np(-2.55, -1.0)  # all negative: widened to [-2.55, 0]
    assert s == np.float32(0.01) and z == 127
    st, zt = P.activation_qparams(torch.tensor(-1.0), torch.tensor(3.0))
    assert float(st) == float(np.float32(4.0 / 255.0)) and int(zt) == -64


def test_bias_int32_at_input_times_weight_scale() -> None:
    b = np.array([0.1, -0.3, 1e9], dtype=np.float32)
    q = P.quantize_bias_np(b, 0.5, np.array([0.1, 0.2, 1e-3], np.float32))
    assert q.dtype == np.int32
    assert q.tolist() == [2, -3, P.INT32_MAX]  # 0.1/0.05 = 2, -0.3/0.1 = -3, saturated


@pytest.mark.parametrize(
    "real, expected",
    [
        (0.5, (1 << 30, 0)),
        (0.25, (1 << 30, -1)),
        (1.0, (1 << 30, 1)),
        (0.75, (1610612736, 0)),
        (0.0, (0, 0)),
        (2.0**-40, (0, 0)),  # flushed to zero like TFLite
        (1.0 - 2.0**-33, (1 << 30, 1)),  # rounds up to 2^31 -> halved, shift + 1
    ],
)
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert P.quantize_multiplier(real) == expected


def test_quantize_multiplier_roundtrip() -> None:
    rng = np.random.default_rng(0)
    for r in rng.uniform(1e-6, 0.99, size=200):
        m, s = P.quantize_multiplier(float(r))
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (s - 31) - r) <= r * 2.0**-30


def test_saturating_rounding_doubling_high_mul() -> None:
    f = P.saturating_rounding_doubling_high_mul
    assert int(f(1 << 30, 1 << 30)) == 1 << 29
    assert int(f(P.INT32_MIN, P.INT32_MIN)) == P.INT32_MAX
    assert int(f(3, 1 << 30)) == 2  # 2*3*2^30 / 2^32 = 1.5 -> 2 (nudge up)
    assert int(f(-3, 1 << 30)) == -1  # -1.5 -> -1: gemmlowp's negative nudge
    assert int(f(100, 1 << 30)) == 50
    assert int(f(-100, 1 << 30)) == -50


def test_rounding_divide_by_pot() -> None:
    f = P.rounding_divide_by_pot
    x = np.array([5, -5, 4, 7, -6, 6, -7, 0])
    assert f(x, 1).tolist() == [3, -3, 2, 4, -3, 3, -4, 0]
    assert f(x, 2).tolist() == [1, -1, 1, 2, -2, 2, -2, 0]  # 1.25, -1.25, 1, 1.75, -1.5, 1.5, -1.75
    assert f(x, 0).tolist() == x.tolist()


def test_requantize_hand_case_and_against_float() -> None:
    m, s = P.quantize_multiplier(0.01)
    assert P.requantize_np(np.array([1000, -1000, 50000]), m, s, -5).tolist() == [5, -15, 127]
    # fused ReLU: clamp from the zero point
    assert P.requantize_np(np.array([-1000]), m, s, -128, act_min=-128).tolist() == [-128]
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 20), 1 << 20, size=5000)
    real = rng.uniform(1e-5, 1e-3, size=8)
    mm, ss = P.quantize_multiplier_np(real)
    accs = acc[: 5000 // 8 * 8].reshape(-1, 8)
    got = P.requantize_np(accs, mm, ss, 3, axis=1).astype(np.int64)
    ref = np.clip(np.round(accs * real) + 3, -128, 127)
    assert np.abs(got - ref).max() <= 1
    assert (got == ref).mean() > 0.99


def test_torch_and_numpy_agree() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    s = P.weight_scales_np(x, axis=1)
    st = P.weight_scales(torch.from_numpy(x), axis=1)
    np.testing.assert_array_equal(s, st.numpy())
    qn = P.quantize_np(x, s, 0, -127, 127, axis=1)
    qt = P.quantize(torch.from_numpy(x), st, torch.zeros(3, dtype=torch.int32), -127, 127, axis=1)
    np.testing.assert_array_equal(qn, qt.numpy())
    np.testing.assert_array_equal(
        P.dequantize_np(qn, s, 0, axis=1), P.dequantize(qt, st, torch.zeros(3), axis=1).numpy()
    )
    sa, za = P.activation_qparams_np(float(x.min()), float(x.max()))
    sb, zb = P.activation_qparams(torch.tensor(x.min()), torch.tensor(x.max()))
    assert sa == float(sb) and za == int(zb)


# ---------------------------------------------- fixed point against exact rational arithmetic, many cases
# The reference below is written from the definitions (Fractions and Python ints, no shifts or masks), so it
# shares no code with primitives.py. The compiler's requant.py re-exports these same functions.


def _round_half_away(q: Fraction) -> int:
    r = math.floor(abs(q) + Fraction(1, 2))
    return r if q >= 0 else -r


def _ref_quantize_multiplier(real: float) -> tuple[int, int]:
    """real = frac · 2^shift with frac in [1/2, 1); M = round_half_away(frac · 2^31) (2^31 → 2^30, shift + 1)."""
    r = Fraction(real)  # exact
    if r == 0:
        return 0, 0
    shift = r.numerator.bit_length() - r.denominator.bit_length()
    while r / Fraction(2) ** shift >= 1:
        shift += 1
    while r / Fraction(2) ** shift < Fraction(1, 2):
        shift -= 1
    m = _round_half_away(r / Fraction(2) ** shift * 2**31)
    if m == 2**31:
        m, shift = 2**30, shift + 1
    return (0, 0) if shift < -31 else (m, shift)


def _ref_srdhm(a: int, b: int) -> int:
    """2·a·b / 2^32 rounded to nearest, ties toward +∞ (gemmlowp's nudge then C truncation); INT32_MIN² saturates."""
    if a == b == P.INT32_MIN:
        return P.INT32_MAX
    return math.floor(Fraction(a * b, 2**31) + Fraction(1, 2))


def _ref_rdbp(x: int, e: int) -> int:
    return _round_half_away(Fraction(x, 2**e))


def _ref_mbqm(x: int, m: int, shift: int) -> int:
    shifted = min(max(x * 2 ** max(shift, 0), P.INT32_MIN), P.INT32_MAX)  # CMSIS-NN saturates the left shift
    return _ref_rdbp(_ref_srdhm(shifted, m), max(-shift, 0))


def _int32_cases(rng: np.random.Generator, n: int) -> np.ndarray:
    edges = [P.INT32_MIN, P.INT32_MIN + 1, -(2**30), -3, -2, -1, 0, 1, 2, 3, 2**30, P.INT32_MAX - 1, P.INT32_MAX]
    v = rng.integers(P.INT32_MIN, P.INT32_MAX, n, dtype=np.int64, endpoint=True)
    v[: n // 4] = rng.integers(-(2**12), 2**12, n // 4)  # small values: the rounding ties are frequent
    v[: len(edges)] = edges
    return v


def test_quantize_multiplier_against_exact_arithmetic() -> None:
    rng = np.random.default_rng(0)
    ties = [(2**31 + 2 * j + 1) / 2**32 * 2.0**k for j in (0, 1, 12345, 2**30 - 1) for k in (-20, 0, 5)]  # M·2 odd
    reals = np.concatenate(
        [
            10.0 ** rng.uniform(-12, 3, 3000),
            rng.uniform(0, 1, 1000),
            ties,
            [0.0, 0.5, 1.0, 0.25, 2.0**-31, 2.0**-32, 2.0**-33, 1 - 2**-40, 1 - 2**-33, 2.0**29],
        ]
    )
    for r in reals:
        assert P.quantize_multiplier(float(r)) == _ref_quantize_multiplier(float(r)), r
    m, s = P.quantize_multiplier_np(reals.reshape(-1, 2))
    assert m.shape == s.shape == (len(reals) // 2, 2) and m.dtype == s.dtype == np.int32
    assert [(int(a), int(b)) for a, b in zip(m.ravel(), s.ravel())] == [
        _ref_quantize_multiplier(float(r)) for r in reals
    ]
    for bad in (-0.5, float("inf"), float("nan"), 2.0**31):
        with pytest.raises(ValueError):
            P.quantize_multiplier(bad)


def test_srdhm_against_exact_arithmetic() -> None:
    rng = np.random.default_rng(1)
    a, b = _int32_cases(rng, 5000), _int32_cases(rng, 5000)
    b[:500] = rng.permutation(a[:500])  # edge values against each other, INT32_MIN² among them
    b[0] = P.INT32_MIN
    got = P.saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [_ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]


def test_rounding_divide_by_pot_against_exact_arithmetic() -> None:
    rng = np.random.default_rng(2)
    x = _int32_cases(rng, 5000)
    e = rng.integers(0, 32, 5000)
    assert P.rounding_divide_by_pot(x, e).tolist() == [_ref_rdbp(int(v), int(k)) for v, k in zip(x, e)]
    with pytest.raises(ValueError):
        P.rounding_divide_by_pot(x[:3], -1)


def test_multiply_by_quantized_multiplier_against_exact_arithmetic() -> None:
    rng = np.random.default_rng(3)
    n = 20000
    x = _int32_cases(rng, n)
    m = rng.integers(2**30, 2**31, n, dtype=np.int64)  # what quantize_multiplier produces
    m[:50] = 0
    shift = rng.integers(-31, 8, n)
    got = P.multiply_by_quantized_multiplier(x, m, shift)
    assert got.tolist() == [_ref_mbqm(int(v), int(q), int(s)) for v, q, s in zip(x, m, shift)]
    # and, where nothing saturates, it is x·M·2^(shift−31) to within the two roundings (one unit)
    exact = [Fraction(int(v) * int(q)) * Fraction(2) ** (int(s) - 31) for v, q, s in zip(x, m, shift)]
    ok = np.abs(x.astype(np.float64) * 2.0 ** np.maximum(shift, 0)) < 2**31
    assert all(abs(g - q) <= 1 for g, q, k in zip(got.tolist(), exact, ok) if k)
