"""Accuracy, top-1 agreement and mean KL between two models' outputs, over whole splits."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from divqat_tvm.train.determinism import numeric


@numeric
@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of `model` in eval mode (mode restored), batched, on the model's device; returned on CPU."""
    was = model.training
    model.eval()
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    out = torch.cat([model(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def accuracy(logits: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((np.asarray(logits).argmax(1) == np.asarray(y)).mean())


def agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fraction of rows where the two logit (or probability) arrays have the same argmax."""
    return float((np.asarray(a).argmax(1) == np.asarray(b).argmax(1)).mean())


def mean_kl(a_logits: torch.Tensor | np.ndarray, b_logits: torch.Tensor | np.ndarray) -> float:
    """Mean over rows of KL(softmax(a) ‖ softmax(b)) in nats."""
    from divqat_tvm.train.losses import kl_per_sample

    a = torch.as_tensor(np.asarray(a_logits), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b_logits), dtype=torch.float64)
    return float(kl_per_sample(a, b).mean())
