"""The compiler's requantization math is the quantizer's (divqat_tvm.quant.primitives, tested there against
exact rational arithmetic), and the arena packer never overlaps tensors that are alive together."""

from __future__ import annotations

import numpy as np
import pytest

from divqat_tvm.compiler import memory
from divqat_tvm.compiler import requant as rq
from divqat_tvm.quant import primitives as P


def test_fixed_point_is_the_quantizers_single_implementation() -> None:
    assert rq.quantize_multiplier is P.quantize_multiplier
    assert rq.srdhm is P.saturating_rounding_doubling_high_mul
    assert rq.rounding_divide_by_pot is P.rounding_divide_by_pot
    assert rq.multiply_by_quantized_multiplier is P.multiply_by_quantized_multiplier


def test_quantize_multipliers_flattens_per_channel() -> None:
    reals = np.array([[0.5, 0.75], [2.0**-40, 1e-3]])
    m, s = rq.quantize_multipliers(reals)
    assert m.shape == s.shape == (4,) and m.dtype == s.dtype == np.int32
    assert list(zip(m.tolist(), s.tolist())) == [P.quantize_multiplier(float(r)) for r in reals.ravel()]
    m0, s0 = rq.quantize_multipliers(np.float64(0.25))  # a per-tensor scale is one channel
    assert m0.tolist() == [1 << 30] and s0.tolist() == [-1]


def test_round_half_even_f32() -> None:
    np.testing.assert_array_equal(
        rq.round_half_even_f32(np.array([0.5, 1.5, -0.5, -1.5, 2.4999], np.float32)), [0, 2, 0, -2, 2]
    )


@pytest.mark.parametrize("seed", range(5))
def test_packer_never_overlaps_live_tensors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ivs = []
    for i in range(30):
        a = int(rng.integers(0, 20))
        ivs.append(memory.Interval(f"t{i}", int(rng.integers(1, 5000)), a, a + int(rng.integers(0, 4))))
    offsets, size = memory.pack(ivs)
    assert size >= memory.peak_live_bytes(ivs)
    for a in ivs:
        assert offsets[a.name] % memory.ALIGN == 0
        assert offsets[a.name] + a.nbytes <= size
        for b in ivs:
            if a is not b and a.overlaps(b):
                a0, b0 = offsets[a.name], offsets[b.name]
                assert a0 + a.nbytes <= b0 or b0 + b.nbytes <= a0, (a, b)


def test_packer_reaches_the_bound_on_a_chain() -> None:
    """A CNN-like chain (each tensor read by the next op only) packs to exactly its peak."""
    sizes = [4096, 8192, 2048, 2048, 1024, 64]
    ivs = [memory.Interval(f"t{i}", s, i, i + 1) for i, s in enumerate(sizes)]
    _, size = memory.pack(ivs)
    assert size == memory.peak_live_bytes(ivs) == 8192 + 4096
