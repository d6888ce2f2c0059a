"""What an attack achieved: the stolen model's test accuracy, its fidelity to the victim, the queries it
used and the wall time.

Fidelity is the top-1 agreement between the student and the victim on the victim's test set. The
victim's top-1 answers come from a SEPARATE evaluation oracle (same backend, same defence) whose queries
are not counted against the attack's budget and never reach the attack: it is the evaluator's view, not
the attacker's. Results record this explicitly (`fidelity_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Top-1 labels of a model on a tensor, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def victim_top1(eval_oracle, x: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """The victim's top-1 on the test set through the (uncounted) evaluation oracle."""
    xs = x.numpy()
    return np.concatenate([eval_oracle.query(xs[i : i + batch_size]).argmax(1) for i in range(0, len(xs), batch_size)])


@dataclass
class Evaluator:
    """Scores students on a fixed test set against labels and the victim's top-1.

    Attributes:
        x: test images [N,C,H,W] (victim's normalisation).
        y: true labels [N].
        victim_pred: the victim's top-1 on x (from the evaluation oracle).
        reference: how `victim_pred` was obtained (goes into the result JSON).
    """

    x: torch.Tensor
    y: torch.Tensor
    victim_pred: torch.Tensor
    reference: str

    @property
    def victim_accuracy(self) -> float:
        return float((self.victim_pred == self.y).float().mean())

    def score(self, student: nn.Module) -> dict[str, float]:
        pred = predict(student, self.x)
        return {
            "stolen_accuracy": float((pred == self.y).float().mean()),
            "fidelity": float((pred == self.victim_pred).float().mean()),
        }

    def accuracy(self, student: nn.Module) -> float:
        return float((predict(student, self.x) == self.y).float().mean())
