"""What every operator family shares: the requantisation of an int32 accumulator as TE stages (both schemes),
its numpy twin, layout indexing, and the (TE function, constants, parameters) triple a family hands lowering.

Requantisation is a parameter: "fixed" (TFLite/CMSIS-NN fixed point, integer only) or "float" (onnxruntime/MLAS:
float32 multiply, round half to even); the integer math itself is requant.py's (and quant/primitives.py's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import Conv2D, Dense, QTensor
from divqat_tvm.errors import CompileError

SCHEMES = ("fixed", "float")

# (TE function, constant arrays passed after the op's inputs, keyword parameters baked into the code)
KernelSpec = tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]


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


def layout_index(layout: str, n, c, h, w):
    """(n, c, h, w) in the tensor's layout order; also its shape from NCHW sizes."""
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def nchw_index(layout: str, i):
    """The inverse of `layout_index`: an index in layout order → (n, c, h, w)."""
    return (i[0], i[1], i[2], i[3]) if layout == "NCHW" else (i[0], i[3], i[1], i[2])


def to_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    """A numpy activation in NCHW order whatever `t`'s layout (the references compute in NCHW)."""
    return a.transpose(0, 3, 1, 2) if t.layout == "NHWC" else a


def from_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    """The inverse of `to_nchw`."""
    return a.transpose(0, 2, 3, 1) if t.layout == "NHWC" else a


def requant_ref(
    acc: np.ndarray, real: np.ndarray, f32_scale: np.ndarray, zp_out: int, lo: int, hi: int, scheme: str
) -> np.ndarray:
    """int32 accumulator → int8 with a per-channel (broadcast) multiplier."""
    if scheme == "fixed":
        m, s = rq.quantize_multipliers(real)
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        v = rq.multiply_by_quantized_multiplier(acc, m.reshape(shape), s.reshape(shape)) + zp_out
    else:
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        v = rq.round_half_even_f32(acc.astype(np.float32) * f32_scale.reshape(shape)) + zp_out
    return np.clip(v, lo, hi)


def folded_bias(bias: np.ndarray, w2d: np.ndarray, zp_in: int, name: str) -> np.ndarray:
    """bias − zp_in·Σw per output (int64): the input zero point folded in, so no kernel sums it per call."""
    b = bias.astype(np.int64) - zp_in * w2d.reshape(w2d.shape[0], -1).astype(np.int64).sum(axis=1)
    if np.any(np.abs(b) >= 2**31):
        raise CompileError(
            f"the bias of '{name}' overflows int32 after folding the zero point.", "Re-quantize the model."
        )
    return b


def requant_arrays(op: Conv2D | Dense, s_in: float, s_out: float, scheme: str) -> list[np.ndarray]:
    """[multiplier, shift] (int32) for "fixed"; [float32 scale] for "float"."""
    if scheme == "fixed":
        real = np.float64(s_in) * op.weight_scale.astype(np.float64) / np.float64(s_out)
        return list(rq.quantize_multipliers(real))
    return [rq.conv_scale_f32(s_in, op.weight_scale, s_out).astype(np.float32)]
