"""A tiny synthetic victim every attack test shares: a fixed random linear classifier on 1x8x8 inputs.

Its "test set" is Gaussian inputs labelled by the victim itself (victim accuracy 100 %), so a stolen
model's accuracy is its agreement with the victim's decision regions; chance is 10 %.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from divqat_tvm.attacks.metrics import Evaluator
from divqat_tvm.oracle.backend_torch import TorchOracle
from divqat_tvm.oracle.base import Oracle

SHAPE = (1, 8, 8)
K = 10


def make_victim() -> nn.Module:
    torch.manual_seed(123)
    lin = nn.Linear(64, K)
    with torch.no_grad():
        lin.weight.mul_(6.0)
    return nn.Sequential(nn.Flatten(), lin).eval()


def make_student(seed: int = 7) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, K))


class CountingOracle(Oracle):
    """Wraps a victim oracle, counts images it really answered, optionally crashes after `fail_after`."""

    kind = "counting"

    def __init__(self, inner: Oracle, fail_after: int | None = None) -> None:
        super().__init__(inner.input_shape, inner.num_classes)
        self.inner = inner
        self.fail_after = fail_after
        self.seen: list[np.ndarray] = []

    def _query(self, x):
        if self.fail_after is not None and self.queries + len(x) > self.fail_after:
            raise RuntimeError("simulated crash of the attack process")
        self.seen.append(x.copy())
        return self.inner.query(x)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def victim_oracle():
    return TorchOracle(make_victim(), SHAPE, K)


@pytest.fixture
def evaluator():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(500, *SHAPE, generator=g) * 0.6
    with torch.no_grad():
        y = make_victim()(x).argmax(1)
    return Evaluator(x, y, y.clone(), "the synthetic victim's own labels")


class SurrogateSet(torch.utils.data.Dataset):
    """KnockoffNets' surrogate: Gaussian images with arbitrary 'classes' (their own labels)."""

    def __init__(self, n: int = 400, seed: int = 9) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, *SHAPE, generator=g) * 0.6
        self.labels = torch.randint(0, 5, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


@pytest.fixture
def surrogate():
    return SurrogateSet()
