"""Graph operators whose int8 semantics are TFLite's own and differ from the ONNX/QDQ ones in graph.py.

Each op carries its TE kernel (`te_kernel`) and its numpy reference (`run_reference`); lower.py and
reference.py call those for any op that has them, so a new op kind needs no change to the compiler's
dispatch. The two are written independently (the reference loops the way TFLite's reference kernel does,
the kernel is one TE expression) so that a mistake in one does not hide in the other.

- `Softmax`: TFLite's fixed-point int8 softmax (see softmax.py), output scale 1/256, zero point −128.
- `TfliteDense`: FULLY_CONNECTED. LiteRT's reference FC (reference_integer_ops::FullyConnected with float
  scales, what BUILTIN_REF runs) does not use the fixed-point multiplier: it computes
  round(double(acc) · s_in·s_w/s_out) in double precision, rounding half away from zero. The fixed-point
  form disagrees with it on about 2% of outputs (checked on MLPerf ResNet-8).
- `TfliteAvgPool`: TFLite's int8 average pool (reference_integer_ops::AveragePool): the sum of raw int8
  values over the in-bounds part of the window, divided by the in-bounds count rounding half away from
  zero, clamped; no rescaling (TFLite requires equal input and output quantization).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import softmax as sm
from divqat_tvm.compiler.graph import QMAX, QMIN, Dense, Graph, Op
from divqat_tvm.compiler.kernels import PoolWindow


@dataclass
class Softmax(Op):
    """int8 softmax over the last axis with TFLite's reference fixed-point arithmetic."""

    beta: float = 1.0

    def params(self, graph: Graph) -> sm.SoftmaxParams:
        return sm.softmax_params(self.beta, graph.tensors[self.inputs[0]].scale)

    def te_kernel(self, graph: Graph) -> tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]:
        """(TE function, constant arrays passed after the inputs, keyword parameters)."""
        return sm.softmax, [sm.exp_table(self.params(graph))], {}

    def run_reference(self, graph: Graph, inputs: list[np.ndarray]) -> np.ndarray:
        return sm.softmax_int8_reference(inputs[0], self.params(graph))


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

    def te_kernel(self, graph: Graph) -> tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]:
        zp_in = graph.tensors[self.inputs[0]].zero_point
        bias = (self.bias.astype(np.int64) - zp_in * self.weight.astype(np.int64).sum(axis=1)).astype(np.int32)
        params = dict(zp_out=graph.tensors[self.output].zero_point, lo=self.act_min, hi=self.act_max)
        # float64 bit patterns as int32 (low, high) pairs: exact through any C emitter (relax.const turns
        # int64 arrays into int32, and a decimal float literal could round).
        scale_bits = self.effective_scales(graph).astype("<f8").view("<i4").copy()
        return dense_round_f64, [self.weight.astype(np.int8), bias, scale_bits], params

    def run_reference(self, graph: Graph, inputs: list[np.ndarray]) -> np.ndarray:
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


@dataclass
class TfliteAvgPool(Op):
    """TFLite int8 average pool over an NHWC tensor (padding excluded from the count)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    act_min: int = QMIN
    act_max: int = QMAX

    @property
    def kind(self) -> str:
        return "avgpool_tflite"

    def te_kernel(self, graph: Graph) -> tuple[Callable[..., Any], list[np.ndarray], dict[str, Any]]:
        out = graph.tensors[self.output]
        return (
            avg_pool_nhwc,
            [],
            dict(
                out_shape=tuple(out.shape),
                kernel=self.kernel,
                stride=self.stride,
                pad=(self.padding[0], self.padding[1]),
                lo=self.act_min,
                hi=self.act_max,
            ),
        )

    def run_reference(self, graph: Graph, inputs: list[np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs[0], dtype=np.int64)
        n, ih, iw, c = x.shape
        _, oh, ow, _ = graph.tensors[self.output].shape
        y = np.zeros((n, oh, ow, c), dtype=np.int64)
        for oy in range(oh):
            for ox in range(ow):
                y0, x0 = oy * self.stride[0] - self.padding[0], ox * self.stride[1] - self.padding[1]
                win = x[:, max(y0, 0) : min(y0 + self.kernel[0], ih), max(x0, 0) : min(x0 + self.kernel[1], iw), :]
                count = win.shape[1] * win.shape[2]
                acc = win.sum(axis=(1, 2))
                half = count // 2
                y[:, oy, ox, :] = np.where(acc > 0, (acc + half) // count, -((-(acc - half)) // count))
        return np.clip(y, self.act_min, self.act_max).astype(np.int8)


def avg_pool_nhwc(x, *, out_shape, kernel, stride, pad, lo: int, hi: int):
    """TE: Σ in-bounds x / in-bounds count, rounded half away from zero (C truncating division), clamped."""
    _, ih, iw, _ = (int(d) for d in x.shape)
    win = PoolWindow(kernel, stride, pad, (ih, iw))
    acc = te.compute(
        tuple(out_shape),
        lambda b, yy, xx, k: win.reduce(
            te.sum, yy, xx, lambda y, z: x[b, y, z, k].astype("int32"), tirx.const(0, "int32")
        ),
        name="acc",
    )

    def out_f(b, yy, xx, k):
        count = win.count_inside(yy, xx)
        a = acc[b, yy, xx, k]
        half = tirx.truncdiv(count, 2)
        v = tirx.Select(a > 0, tirx.truncdiv(a + half, count), tirx.truncdiv(a - half, count))
        return tirx.max(tirx.min(v, hi), lo).astype("int8")

    return te.compute(tuple(out_shape), out_f, name="out")
