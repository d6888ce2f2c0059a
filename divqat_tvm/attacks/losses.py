"""The attacks' student losses, all computed from the probabilities the victim RETURNED.

No loss here ever takes the argmax of the victim's answer: training on hard labels (ART's default for
KnockoffNets) would silently bypass any defence that only reshapes probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: log p is clamped at log(1e-8) when approximating logits: a float32 softmax (or a defence that clips
#: at 0) can return exact zeros, and DFME's L1 target must stay finite.
LOG_P_MIN = -18.420680743952367


def soft_cross_entropy(student_logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KnockoffNets: −Σ p · log softmax(s), batch mean."""
    return -(p * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()


def kl_divergence(student_logits: torch.Tensor, p: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """MAZE: KL(p ‖ softmax(s)) (forward KL, victim first), "batchmean" or "none" (per sample)."""
    per = F.kl_div(F.log_softmax(student_logits, dim=1), p, reduction="none").sum(dim=1)
    return per.mean() if reduction == "batchmean" else per


def approx_logits(p: torch.Tensor, correction: str = "mean") -> torch.Tensor:
    """DFME: the victim's logits recovered up to a constant: log p minus its mean ("mean") or min ("min")."""
    logp = torch.log(p.clamp_min(1e-30)).clamp_min(LOG_P_MIN)
    if correction == "mean":
        return logp - logp.mean(dim=1, keepdim=True)
    if correction == "min":
        return logp - logp.min(dim=1, keepdim=True).values
    return logp


def l1_logits(student_logits: torch.Tensor, target_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """DFME: mean absolute difference of logits ("mean" overall, or "none" → per sample)."""
    d = (student_logits - target_logits).abs()
    return d.mean() if reduction == "mean" else d.mean(dim=1)


def replay_loss(attack: str):
    """The loss an offline replay of an `attack`'s log trains with (its own student loss)."""
    if attack == "dfme":
        return lambda s, p: l1_logits(s, approx_logits(p))
    if attack == "maze":
        return kl_divergence
    return soft_cross_entropy
