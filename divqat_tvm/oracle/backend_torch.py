"""The reference backend: the victim's torch model (float or fake-quant checkpoint) answering softmax
probabilities, optionally through a defence applied in Python.

The model is kept out of the attacker's reach: it lives only inside a closure created in
`_make_answerer`, and the oracle object holds no attribute that refers to it. (Python has no true
privacy; this keeps honest attack code honest, and tests check attacks only use the Oracle surface.)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from divqat_tvm.oracle.base import Oracle


def _make_answerer(model: nn.Module, defense: Callable | None) -> Callable[[np.ndarray], np.ndarray]:
    """A function x -> probabilities that closes over the model; nothing else keeps the model."""
    model = model.eval()

    def answer(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.from_numpy(x))
            p = torch.softmax(logits.to(torch.float64), dim=1)
            if defense is not None:
                p = defense(p)
        return p.to(torch.float32).numpy()

    return answer


class TorchOracle(Oracle):
    """Answer queries with a torch model's softmax (the reference for the device backends).

    Args:
        model: the victim, outputting logits; put in eval mode and never exposed.
        input_shape: (C, H, W) the model takes (in its normalised input space).
        num_classes: K, the length of each probability vector.
        defense: optional post-processor on probabilities (e.g. `ReverseSigmoid`, `DCP`).
        budget: optional maximum number of queried images.
    """

    kind = "torch"

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        defense: Callable | None = None,
        budget: int | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes, budget)
        self.defense_spec = getattr(defense, "spec", None if defense is None else type(defense).__name__)
        self._answer = _make_answerer(model, defense)

    def _query(self, x: np.ndarray) -> np.ndarray:
        return self._answer(x)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], defense: Callable | None = None, budget: int | None = None
    ) -> TorchOracle:
        """Open a checkpoint written by `divqat_tvm.train.checkpoint.save_checkpoint`.

        Raises:
            CheckpointError: missing, corrupt or wrong-kind file (from `load_checkpoint`).
        """
        from divqat_tvm.train.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)
        return cls(model, tuple(meta["input_shape"]), int(meta["num_classes"]), defense=defense, budget=budget)
