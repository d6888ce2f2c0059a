"""A numpy interpreter of the int8 graph: the independent reference the compiled C is tested against.

It implements each operator the plain way (zero points subtracted inside the sums, padding as a real
zero), not the way the TE kernels do (zero points folded into the bias, padding with the input's zero
point), so the two only agree if both are right.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import (
    Add,
    AvgPool,
    Conv2D,
    Dense,
    GlobalAvgPool,
    Graph,
    MaxPool,
    Op,
    QTensor,
    Reshape,
)
from divqat_tvm.errors import CompileError


def run_reference(graph: Graph, x: np.ndarray, scheme: str = "fixed") -> np.ndarray:
    """Run int8 input [N, ...] (the graph's input shape with any N) through the graph; int8 output."""
    env: dict[str, np.ndarray] = {graph.input: np.asarray(x, dtype=np.int8)}
    for op in graph.ops:
        env[op.output] = _run_op(graph, op, env, scheme).astype(np.int8)
    return env[graph.output]


def _to_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if t.layout == "NHWC" else a


def _from_nchw(t: QTensor, a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if t.layout == "NHWC" else a


def _requant(
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


def _conv(graph: Graph, op: Conv2D, env: dict[str, np.ndarray], scheme: str) -> np.ndarray:
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = _to_nchw(ti, env[op.inputs[0]]).astype(np.int64) - ti.zero_point
    pt, pl, pb, pr = op.padding
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = op.weight.astype(np.int64)
    o, ig, kh, kw = w.shape
    dh, dw = op.dilation
    sh, sw = op.stride
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # N, C, OH, OW, KH, KW
    og = o // op.groups
    outs = []
    for g in range(op.groups):
        xg = win[:, g * ig : (g + 1) * ig]
        wg = w[g * og : (g + 1) * og]
        # float64 products and sums of int8 values are exact far beyond any int32 accumulator (< 2^53),
        # and tensordot reaches BLAS: the same integers, much faster than an int64 einsum.
        acc_g = np.tensordot(xg.astype(np.float64), wg.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
        outs.append(np.rint(acc_g).astype(np.int64).transpose(0, 3, 1, 2))
    acc = np.concatenate(outs, axis=1) + op.bias.astype(np.int64).reshape(1, -1, 1, 1)
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    y = _requant(
        acc, real, rq.conv_scale_f32(ti.scale, op.weight_scale, to.scale), to.zero_point, op.act_min, op.act_max, scheme
    )
    return _from_nchw(to, y)


def _dense(graph: Graph, op: Dense, env: dict[str, np.ndarray], scheme: str) -> np.ndarray:
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = env[op.inputs[0]].reshape(env[op.inputs[0]].shape[0], -1).astype(np.int64) - ti.zero_point
    acc = x @ op.weight.astype(np.int64).T + op.bias.astype(np.int64)
    real = np.float64(ti.scale) * op.weight_scale.astype(np.float64) / np.float64(to.scale)
    return _requant(
        acc, real, rq.conv_scale_f32(ti.scale, op.weight_scale, to.scale), to.zero_point, op.act_min, op.act_max, scheme
    )


def _add(graph: Graph, op: Add, env: dict[str, np.ndarray], scheme: str) -> np.ndarray:
    ta, tb, to = (graph.tensors[n] for n in (*op.inputs, op.output))
    a = env[op.inputs[0]].astype(np.int64)
    b = env[op.inputs[1]].astype(np.int64)
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


def _pool_windows(t: QTensor, a: np.ndarray, kernel, stride, padding, pad_value: int) -> np.ndarray:
    x = _to_nchw(t, a).astype(np.int64)
    pt, pl, pb, pr = padding
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    return sliding_window_view(x, tuple(kernel), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]


def _avg_requant(total: np.ndarray, count: int, ti: QTensor, to: QTensor, scheme: str) -> np.ndarray:
    """Σ(x − zp_in) over `count` elements → int8 at the output scale."""
    if scheme == "fixed":
        m, s = rq.quantize_multiplier(ti.scale / (to.scale * count))
        v = rq.multiply_by_quantized_multiplier(total, m, s) + to.zero_point
    else:
        scale = np.float32(ti.scale) / (np.float32(to.scale) * np.float32(count))
        v = rq.round_half_even_f32(total.astype(np.float32) * scale) + to.zero_point
    return np.clip(v, -128, 127)


def _avg_pool_ort(win: np.ndarray, ti: QTensor, to: QTensor) -> np.ndarray:
    """onnxruntime QLinearAveragePool: float32 dequantized values summed row by row, / window, then
    nearbyint(y / s_out + zp_out) with zp_out in the uint8 domain (x86; requant.ORT_U8_OFFSET). Padding holds
    zp_in, i.e. adds 0.0."""
    kh, kw = win.shape[-2:]
    deq = np.float32(ti.scale) * (win - ti.zero_point).astype(np.float32)
    acc = np.zeros(win.shape[:-2], np.float32)
    for i in range(kh):
        for j in range(kw):
            acc = (acc + deq[..., i, j]).astype(np.float32)
    y = acc / np.float32(kh * kw)
    u = rq.ORT_U8_OFFSET
    v = np.rint((y / np.float32(to.scale) + np.float32(to.zero_point + u)).astype(np.float32)).astype(np.int64) - u
    return np.clip(v, -128, 127)


def _run_op(graph: Graph, op: Op, env: dict[str, np.ndarray], scheme: str) -> np.ndarray:
    if hasattr(op, "run_reference_for"):  # ops_extra.py: semantics that depend on the requantization scheme
        return op.run_reference_for(graph, [env[n] for n in op.inputs], scheme)
    if hasattr(op, "run_reference"):  # ops defined outside graph.py (e.g. tflite_ops.py) bring their own
        return op.run_reference(graph, [env[n] for n in op.inputs])
    if isinstance(op, Conv2D):
        return _conv(graph, op, env, scheme)
    if isinstance(op, Dense):
        return _dense(graph, op, env, scheme)
    if isinstance(op, Add):
        return _add(graph, op, env, scheme)
    ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    x = env[op.inputs[0]]
    if isinstance(op, MaxPool):
        return _from_nchw(to, _pool_windows(ti, x, op.kernel, op.stride, op.padding, -128).max(axis=(4, 5)))
    if isinstance(op, AvgPool) and scheme == "float":
        return _from_nchw(
            to, _avg_pool_ort(_pool_windows(ti, x, op.kernel, op.stride, op.padding, ti.zero_point), ti, to)
        )
    if isinstance(op, AvgPool):
        win = _pool_windows(ti, x, op.kernel, op.stride, op.padding, ti.zero_point)
        total = (win - ti.zero_point).sum(axis=(4, 5))
        return _from_nchw(to, _avg_requant(total, op.kernel[0] * op.kernel[1], ti, to, scheme))
    if isinstance(op, GlobalAvgPool):
        xn = _to_nchw(ti, x).astype(np.int64)
        total = (xn - ti.zero_point).sum(axis=(2, 3), keepdims=True)
        return _from_nchw(to, _avg_requant(total, xn.shape[2] * xn.shape[3], ti, to, scheme))
    if isinstance(op, Reshape):
        return x.reshape((x.shape[0],) + tuple(to.shape[1:]))
    raise CompileError(f"the reference has no implementation of '{op.kind}' (node '{op.name}').")
