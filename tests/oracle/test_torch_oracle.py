"""TorchOracle answers the victim's softmax (through a defence), counts queries, hides the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from divqat_tvm.defenses import DCP
from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle import QueryBudgetExceeded
from divqat_tvm.oracle.backend_torch import TorchOracle


def tiny_victim(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 5))


def test_answers_softmax_and_counts():
    torch.set_num_threads(1)
    model = tiny_victim()
    oracle = TorchOracle(model, (2, 4, 4), 5, budget=10)
    x = np.random.default_rng(0).normal(size=(4, 2, 4, 4)).astype(np.float32)
    p = oracle.query(x)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    assert p.dtype == np.float32 and p.shape == (4, 5)
    np.testing.assert_allclose(p, ref, atol=1e-6)
    assert oracle.queries == 4
    oracle.query(x[0])  # a single image counts as one
    assert oracle.queries == 5
    with pytest.raises(QueryBudgetExceeded):
        oracle.query(np.concatenate([x, x]))
    assert oracle.queries == 5
    with pytest.raises(DivqatError, match="shape"):
        oracle.query(np.zeros((1, 3, 4, 4), np.float32))


def test_defense_applied_after_softmax():
    model = tiny_victim(1)
    x = np.random.default_rng(1).normal(size=(8, 2, 4, 4)).astype(np.float32) * 0.1
    plain = TorchOracle(model, (2, 4, 4), 5).query(x)
    d = DCP(beta=0.9)
    defended = TorchOracle(model, (2, 4, 4), 5, defense=d).query(x)
    np.testing.assert_allclose(defended, d(plain), atol=1e-5)
    assert np.abs(defended - plain).max() > 1e-3


def test_model_is_not_an_attribute_of_the_oracle():
    model = tiny_victim()
    oracle = TorchOracle(model, (2, 4, 4), 5)
    weight = next(model.parameters())
    for value in vars(oracle).values():
        assert not isinstance(value, nn.Module)
        assert value is not weight


def test_from_checkpoint_uses_the_checkpoint_contract(tmp_path):
    from divqat_tvm.models import build_model
    from divqat_tvm.train import checkpoint

    model = build_model("tinycnn", 1, 10, 28).eval()
    meta = {
        "kind": "float",
        "arch": "tinycnn",
        "dataset": "mnist5k",
        "input_shape": [1, 28, 28],
        "num_classes": 10,
        "normalization": {"mean": [0.1307], "std": [0.3077]},
        "method": "float",
        "alpha": 0.0,
        "kl_direction": None,
        "kl_cap": None,
        "metrics": {},
        "git_rev": "test",
        "format_version": 1,
    }
    path = tmp_path / "v.pt"
    checkpoint.save_checkpoint(path, model, meta)
    oracle = TorchOracle.from_checkpoint(path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(oracle.query(x.numpy()), ref, atol=1e-5)
