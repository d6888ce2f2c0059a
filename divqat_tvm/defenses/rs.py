"""Reverse sigmoid (Lee et al., "Defending Against NN Model Stealing Attacks Using Deceptive
Perturbations", arXiv 1806.00054): a post-processor on probability vectors that keeps the top-1 class
for moderate β but makes the returned probabilities poor targets for a soft-label student.

    r = β · (σ(γ · log(p / (1 − p))) − ½),   ỹ = (p − r) / Σ(p − r)

Numerical choices (the C twin in firmware/src/postprocess.c must make the same ones):
- p is clamped to [EPS, 1 − EPS] with EPS = 1e-6 (the float32 values of both bounds; spec.py) before the log-odds. The authors clamp at 1e-12, which
  a float32 device cannot represent next to 1 (1 − 1e-12 rounds to 1 and the log-odds become infinite);
  1e-6 is representable in float32 on both sides, so host and device agree.
- p − r is clipped at 0 before normalising (as ART's ReverseSigmoid does): a probability is never
  negative. If every entry clips to 0 (only possible for β far above the swept range) the answer is
  the uniform vector.
- numpy is computed in float64 and returned as float32; torch keeps the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from divqat_tvm.defenses.spec import DEFAULT_GAMMA, EPS, P_MAX, P_MIN, validate

__all__ = [
    "EPS",
    "P_MAX",
    "P_MIN",
    "ReverseSigmoid",
    "renormalize_np",
    "renormalize_torch",
    "rs_perturbation_np",
    "rs_perturbation_torch",
    "validate_beta_gamma",
]


def validate_beta_gamma(beta: float, gamma: float) -> None:
    """Full-sentence ValueErrors for out-of-range parameters, shared by RS and DCP (defenses/spec.py)."""
    validate(beta, gamma)


def rs_perturbation_np(p: np.ndarray, beta: float, gamma: float) -> np.ndarray:
    """r = β·(σ(γ·logit p) − ½) in float64 (numpy)."""
    q = np.clip(np.asarray(p, dtype=np.float64), P_MIN, P_MAX)
    z = gamma * np.log(q / (1.0 - q))
    return beta * (1.0 / (1.0 + np.exp(-z)) - 0.5)


def rs_perturbation_torch(p: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """r = β·(σ(γ·logit p) − ½) in p's dtype (torch)."""
    q = p.clamp(P_MIN, P_MAX)
    return beta * (torch.sigmoid(gamma * torch.log(q / (1.0 - q))) - 0.5)


def renormalize_np(y: np.ndarray) -> np.ndarray:
    """Clip at 0 and divide by the row sum; an all-zero row becomes uniform."""
    y = np.maximum(y, 0.0)
    s = y.sum(axis=-1, keepdims=True)
    k = y.shape[-1]
    return np.where(s > 0, y / np.where(s > 0, s, 1.0), 1.0 / k)


def renormalize_torch(y: torch.Tensor) -> torch.Tensor:
    """Clip at 0 and divide by the row sum; an all-zero row becomes uniform."""
    y = y.clamp_min(0.0)
    s = y.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(y, 1.0 / y.shape[-1])
    return torch.where(s > 0, y / torch.where(s > 0, s, torch.ones_like(s)), uniform)


@dataclass(frozen=True)
class ReverseSigmoid:
    """RS post-processor; call it on a probability array [..., K] (numpy or torch).

    Args:
        beta: perturbation magnitude β ≥ 0 (β = 0 returns p unchanged up to renormalisation).
        gamma: sigmoid slope γ > 0 (default `spec.DEFAULT_GAMMA`, the paper's 0.1).
    """

    beta: float
    gamma: float = DEFAULT_GAMMA

    def __post_init__(self) -> None:
        validate_beta_gamma(self.beta, self.gamma)

    @property
    def spec(self) -> str:
        return f"rs:beta={self.beta:g},gamma={self.gamma:g}"

    def __call__(self, p):
        if isinstance(p, torch.Tensor):
            return renormalize_torch(p - rs_perturbation_torch(p, self.beta, self.gamma))
        p64 = np.asarray(p, dtype=np.float64)
        return renormalize_np(p64 - rs_perturbation_np(p64, self.beta, self.gamma)).astype(np.float32)
