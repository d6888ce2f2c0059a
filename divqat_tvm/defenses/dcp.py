"""DCP (Khaled et al., "Efficient defense against model stealing attacks on convolutional neural
networks", arXiv 2309.01838; `method_dcp` in the authors' code): reverse sigmoid applied only to
low-confidence answers, where a stealing attack learns the most and a legitimate user loses nothing.

    a = 1 / (1 + exp(ν · (max p − β))),   ỹ = (p − a · r) / Σ(p − a · r),   r as in RS (γ)

β is both the confidence threshold and the perturbation magnitude; ν = 1000 makes the gate a near step.

Numerical choices (shared with rs.py and the C twin): the gate is computed as σ(−ν·(max p − β)), the
overflow-free form of the same expression (exp(ν·…) overflows float32 for max p − β > 0.09); p is
clamped at 1e-6 inside r; p − a·r is clipped at 0 before normalising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from divqat_tvm.defenses.rs import renormalize_np, renormalize_torch, rs_perturbation_np, rs_perturbation_torch
from divqat_tvm.defenses.spec import DEFAULT_GAMMA, DEFAULT_NU, validate


def dcp_gate_np(p: np.ndarray, beta: float, nu: float) -> np.ndarray:
    """a = σ(−ν·(max p − β)) per row, shape [..., 1] (float64)."""
    t = -nu * (np.max(np.asarray(p, dtype=np.float64), axis=-1, keepdims=True) - beta)
    # σ(t) without overflow: exp of a non-positive number only.
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def dcp_gate_torch(p: torch.Tensor, beta: float, nu: float) -> torch.Tensor:
    """a = σ(−ν·(max p − β)) per row, shape [..., 1]."""
    return torch.sigmoid(-nu * (p.amax(dim=-1, keepdim=True) - beta))


@dataclass(frozen=True)
class DCP:
    """DCP post-processor; call it on a probability array [..., K] (numpy or torch).

    Args:
        beta: confidence threshold and perturbation magnitude β ≥ 0.
        gamma: sigmoid slope γ > 0 of the reverse-sigmoid perturbation (default `spec.DEFAULT_GAMMA`, 0.1).
        nu: gate sharpness ν > 0 (default `spec.DEFAULT_NU`, 1000).
    """

    beta: float
    gamma: float = DEFAULT_GAMMA
    nu: float = DEFAULT_NU

    def __post_init__(self) -> None:
        validate(self.beta, self.gamma, self.nu)

    @property
    def spec(self) -> str:
        return f"dcp:beta={self.beta:g},gamma={self.gamma:g},nu={self.nu:g}"

    def __call__(self, p):
        if isinstance(p, torch.Tensor):
            a = dcp_gate_torch(p, self.beta, self.nu)
            return renormalize_torch(p - a * rs_perturbation_torch(p, self.beta, self.gamma))
        p64 = np.asarray(p, dtype=np.float64)
        a = dcp_gate_np(p64, self.beta, self.nu)
        return renormalize_np(p64 - a * rs_perturbation_np(p64, self.beta, self.gamma)).astype(np.float32)
