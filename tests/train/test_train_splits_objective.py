"""The in-distribution partitions are disjoint from each other and from the test split; the top-1-preserving
DivQAT objective pushes only the non-top classes and reduces to cross-entropy at α = λ = 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from divqat_tvm.data import load_dataset
from divqat_tvm.errors import DataError, DivqatError
from divqat_tvm.quant.config import DivQATConfig
from divqat_tvm.train.losses import (
    DivQATLoss,
    NonTopDivQATLoss,
    divqat_objective,
    kl_per_sample,
    nontop_kl_per_sample,
    top1_margin,
)
from divqat_tvm.train.splits import load_split, split_name


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_mnist5k_halves_are_disjoint_stratified_and_cover_the_training_split() -> None:
    v, a = load_split("mnist5k@victim", "train"), load_split("mnist5k@attacker", "train")
    full, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    assert len(v) == len(a) == 2000 and len(full) == 4000
    xv, yv = v.tensors()
    xa, ya = a.tensors()
    xt, _ = test.tensors()
    assert not _rows(xv) & _rows(xa) and not _rows(xa) & _rows(xt) and not _rows(xv) & _rows(xt)
    assert _rows(xv) | _rows(xa) == _rows(full.tensors()[0])
    assert np.abs(np.bincount(yv.numpy(), minlength=10) - np.bincount(ya.numpy(), minlength=10)).max() <= 1
    assert torch.equal(load_split("mnist5k@victim", "test").tensors()[0], xt)  # both halves share the test split
    assert load_split("mnist5k@attacker", "train", augment=True).augment


def test_unknown_partition_is_a_data_error() -> None:
    assert split_name("mnist5k") == ("mnist5k", None)
    with pytest.raises(DataError, match="@victim"):
        split_name("mnist5k@both")


def test_nontop_kl_plus_binary_kl_is_the_full_kl() -> None:
    """KL(p‖q) = KL(Bern(p_c)‖Bern(q_c)) + (1 − p_c)·KL(p̃‖q̃): the objective's term is the non-top part."""
    torch.manual_seed(0)
    t, s = torch.randn(16, 10, dtype=torch.float64) * 3, torch.randn(16, 10, dtype=torch.float64) * 3
    top = t.argmax(1)
    p, q = F.softmax(t, 1).gather(1, top[:, None])[:, 0], F.softmax(s, 1).gather(1, top[:, None])[:, 0]
    binary = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    assert torch.allclose(binary + (1 - p) * nontop_kl_per_sample(t, s, top), kl_per_sample(t, s))
    loss = NonTopDivQATLoss(DivQATConfig(objective="nontop", kl_cap=None))
    assert torch.allclose(loss.divergence(s, t), (1 - p) * nontop_kl_per_sample(t, s, top))


def test_nontop_push_never_moves_the_top_class_logit() -> None:
    torch.manual_seed(1)
    t = torch.randn(8, 10)
    s = (t + 0.3 * torch.randn(8, 10)).requires_grad_()
    NonTopDivQATLoss(DivQATConfig(objective="nontop", kl_cap=None)).divergence(s, t).sum().backward()
    top = t.argmax(1)
    assert torch.all(s.grad.gather(1, top[:, None]) == 0) and s.grad.abs().sum() > 0


def test_margin_hinge_and_reduction_to_cross_entropy() -> None:
    torch.manual_seed(2)
    t, s, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    m = top1_margin(s, t.argmax(1))
    assert torch.allclose(m > 0, s.argmax(1) == t.argmax(1))
    zero = NonTopDivQATLoss(DivQATConfig(alpha=0.0, objective="nontop", margin_weight=0.0))(s, y, t)
    assert torch.equal(zero.loss, F.cross_entropy(s, y))
    assert isinstance(divqat_objective(DivQATConfig(objective="nontop")), NonTopDivQATLoss)
    assert isinstance(divqat_objective(DivQATConfig()), DivQATLoss)
    with pytest.raises(DivqatError, match="objective"):
        DivQATConfig(objective="bogus")


def test_cli_unknown_objective_is_one_line_exit_2(tmp_path, capsys) -> None:
    from divqat_tvm.cli import main

    assert (
        main(["quantize", str(tmp_path / "t.pt"), "--method", "divqat", "--objective", "bogus", "--no-progress"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "objective" in err and len(err.splitlines()) == 1
