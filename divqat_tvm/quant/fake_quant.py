"""Fake quantization for training: quantize→dequantize in the forward pass, straight-through gradients.

The forward pass uses `primitives.quantize`/`dequantize` (round half to even, x / scale, float32 scales), so a
fake-quant tensor holds exactly the values onnxruntime's QuantizeLinear→DequantizeLinear would produce. The
backward pass is the clipped straight-through estimator: gradient 1 where the value fell inside the integer
range, 0 where it was clamped. Scales and zero points get no gradient (they come from observers / max|w|).
"""

from __future__ import annotations

import torch
from torch import nn

from divqat_tvm.quant import primitives as P


class _FakeQuantSTE(torch.autograd.Function):
    """q/dq with a clipped straight-through gradient."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin: int, qmax: int, axis: int | None):
        s = P._bcast(scale.to(torch.float32), x.dim(), axis)
        z = P._bcast(zero_point.to(torch.int64), x.dim(), axis)
        q = torch.round(x / s).to(torch.int64) + z
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(q, qmin, qmax) - z).to(x.dtype) * s

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None, None


class _RoundSTE(torch.autograd.Function):
    """q/dq without clipping mask (int32 bias: the range is never reached in practice, saturate anyway)."""

    @staticmethod
    def forward(ctx, x, scale):
        q = torch.clamp(torch.round(x / scale), P.INT32_MIN, P.INT32_MAX)
        return q * scale

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, axis: int | None = None
) -> torch.Tensor:
    """Quantize-dequantize `x` (per tensor, or per channel along `axis`) with a clipped STE gradient."""
    return _FakeQuantSTE.apply(x, scale, zero_point, qmin, qmax, axis)


def fake_quantize_weight(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel symmetric int8 weights in [-127, 127]; returns (fake-quant weight, scales)."""
    scale = P.weight_scales(w, axis)
    zp = torch.zeros_like(scale, dtype=torch.int32)
    return fake_quantize(w, scale, zp, P.WEIGHT_QMIN, P.WEIGHT_QMAX, axis), scale


def fake_quantize_bias(b: torch.Tensor, s_in: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    """int32 bias at scale s_in · s_w[c] (float32 product, as exported), gradient passed straight through."""
    return _RoundSTE.apply(b, (s_in.to(torch.float32) * s_w.to(torch.float32)).detach())


class ActFakeQuant(nn.Module):
    """Per-tensor asymmetric int8 activation fake quant with a min/max observer.

    While training and not frozen, each forward pass updates the observed range from the batch — a running
    min/max (calibration, PTQ) or an exponential moving average (QAT) — and recomputes scale and zero point;
    then it fake-quantizes with them. Frozen, it only fake-quantizes. All state is in buffers, so a checkpoint
    carries the exact ranges the export uses.

    Args:
        momentum: EMA weight of the newest batch in "ema" mode.
    """

    # buffers (registered in __init__), declared for type checkers
    min_val: torch.Tensor
    max_val: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    initialized: torch.Tensor
    frozen: torch.Tensor
    ema: torch.Tensor

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("min_val", torch.tensor(0.0))
        self.register_buffer("max_val", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("frozen", torch.tensor(False))
        self.register_buffer("ema", torch.tensor(False))

    def set_mode(self, mode: str) -> None:
        """ "minmax" (running min/max, calibration) or "ema" (moving average, QAT)."""
        if mode not in ("minmax", "ema"):
            raise ValueError(f"observer mode must be 'minmax' or 'ema', got {mode!r}")
        self.ema.fill_(mode == "ema")

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) updating the range; the current scale and zero point stay."""
        self.frozen.fill_(frozen)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Fold one batch's min and max into the range and recompute (scale, zero_point)."""
        lo, hi = x.detach().amin().to(torch.float32), x.detach().amax().to(torch.float32)
        if not bool(self.initialized):
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
            self.initialized.fill_(True)
        elif bool(self.ema):
            self.min_val.add_(self.momentum * (lo - self.min_val))
            self.max_val.add_(self.momentum * (hi - self.max_val))
        else:
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
        scale, zp = P.activation_qparams(self.min_val, self.max_val)
        self.scale.copy_(scale)
        self.zero_point.copy_(zp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.frozen):
            self.observe(x)
        if not bool(self.initialized):
            raise RuntimeError("activation fake quant used before calibration: run calibrate() first")
        return fake_quantize(x, self.scale, self.zero_point, P.INT8_MIN, P.INT8_MAX)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):.6g}, zero_point={int(self.zero_point)}, frozen={bool(self.frozen)}"
