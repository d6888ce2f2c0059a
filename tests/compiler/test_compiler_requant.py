"""The compiler's requantization math agrees with divqat_tvm.quant.primitives (the quantizer's), and the
arena packer never overlaps tensors that are alive together."""

from __future__ import annotations

import numpy as np
import pytest

from divqat_tvm.compiler import memory
from divqat_tvm.compiler import requant as rq
from divqat_tvm.quant import primitives as P


def test_quantize_multiplier_matches_quant_primitives() -> None:
    rng = np.random.default_rng(0)
    reals = np.concatenate([10.0 ** rng.uniform(-12, 3, 2000), [0.0, 0.5, 1.0, 0.25, 2.0**-31, 2.0**-32, 1 - 2**-40]])
    for r in reals:
        assert rq.quantize_multiplier(float(r)) == P.quantize_multiplier(float(r)), r


def test_multiply_by_quantized_multiplier_matches_quant_primitives() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-(2**31), 2**31, 20000, dtype=np.int64)
    x[:100] = rng.integers(-3, 4, 100)
    m = rng.integers(2**30, 2**31, 20000, dtype=np.int64)
    shift = rng.integers(-31, 8, 20000)
    ours = rq.multiply_by_quantized_multiplier(x, m, shift)
    theirs = P.multiply_by_quantized_multiplier(x, m, shift)
    np.testing.assert_array_equal(ours.astype(np.int64), theirs.astype(np.int64))


def test_round_half_even_f32() -> None:
    np.testing.assert_array_equal(rq.round_half_even_f32(np.array([0.5, 1.5, -0.5, -1.5, 2.4999], np.float32)),
                                  [0, 2, 0, -2, 2])


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
