"""RS and DCP against the papers' formulas, computed independently with `math` per element."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from divqat_tvm.defenses import DCP, Chain, ReverseSigmoid, parse_defense
from divqat_tvm.errors import DivqatError


def ref_rs(p, beta, gamma, a=1.0):
    """ỹ = (p − a·r)/Σ(p − a·r), r = β(σ(γ log(p/(1−p))) − ½), elementwise with math (no clamping needed)."""
    r = [beta * (1 / (1 + math.exp(-gamma * math.log(q / (1 - q)))) - 0.5) for q in p]
    y = [q - a * ri for q, ri in zip(p, r)]
    s = sum(y)
    return [v / s for v in y]


def ref_dcp(p, beta, gamma, nu):
    a = 1 / (1 + math.exp(nu * (max(p) - beta))) if nu * (max(p) - beta) < 700 else 0.0
    return ref_rs(p, beta, gamma, a)


VECTORS = [[0.4, 0.35, 0.25], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2] * 5, [0.97, 0.01, 0.01, 0.01]]


def test_rs_closed_form_gamma_one():
    # With γ = 1, σ(log(p/(1−p))) = p, so r = β(p − ½) and ỹ ∝ (1 − β)p + β/2: checkable by hand.
    p = np.array([0.75, 0.25])
    np.testing.assert_allclose(ReverseSigmoid(beta=1.0, gamma=1.0)(p), [0.5, 0.5], atol=1e-6)
    p = np.array([0.7, 0.2, 0.1])
    beta = 0.5
    y = (1 - beta) * p + beta / 2
    np.testing.assert_allclose(ReverseSigmoid(beta=beta, gamma=1.0)(p), y / y.sum(), atol=1e-6)


@pytest.mark.parametrize("p", VECTORS)
@pytest.mark.parametrize("beta,gamma", [(0.0, 0.1), (0.1, 0.1), (1.0, 0.1), (0.64, 0.5)])
def test_rs_matches_paper_formula_numpy_and_torch(p, beta, gamma):
    ref = ref_rs(p, beta, gamma)
    rs = ReverseSigmoid(beta=beta, gamma=gamma)
    np.testing.assert_allclose(rs(np.array(p)), ref, atol=1e-6)
    np.testing.assert_allclose(rs(torch.tensor(p, dtype=torch.float64)).numpy(), ref, atol=1e-9)
    assert rs(np.array([p])).shape == (1, len(p))


@pytest.mark.parametrize("p", VECTORS)
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.95, 1.0, 1.5])
def test_dcp_matches_paper_formula(p, beta):
    ref = ref_dcp(p, beta, 0.1, 1000.0)
    d = DCP(beta=beta)
    np.testing.assert_allclose(d(np.array(p)), ref, atol=1e-6)
    np.testing.assert_allclose(d(torch.tensor(p, dtype=torch.float64)).numpy(), ref, atol=1e-9)


def test_outputs_are_distributions_and_batches_work():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4, size=(64, 10))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for post in (ReverseSigmoid(beta=1.28), DCP(beta=1.0), DCP(beta=0.5), Chain((DCP(beta=0.5), ReverseSigmoid(0.1)))):
        y = post(p)
        assert y.dtype == np.float32 and y.shape == p.shape
        assert (y >= 0).all()
        np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
        yt = post(torch.from_numpy(p))
        np.testing.assert_allclose(yt.numpy(), y, atol=1e-6)


def test_dcp_gate_switches_around_beta():
    d = DCP(beta=0.6)
    confident = np.array([0.61, 0.29, 0.10])  # max p just above β: gate a = σ(−10) ≈ 4.5e-5, answer ≈ p
    unsure = np.array([0.59, 0.31, 0.10])  # just below β: gate ≈ 1, full reverse sigmoid
    np.testing.assert_allclose(d(confident), confident, atol=1e-4)
    np.testing.assert_allclose(d(unsure), ref_rs(list(unsure), 0.6, 0.1), atol=1e-5)
    assert np.abs(d(unsure) - unsure).sum() > 0.01
    # At max p == β exactly the gate is ½.
    at = np.array([0.6, 0.3, 0.1])
    np.testing.assert_allclose(d(at), ref_rs(list(at), 0.6, 0.1, a=0.5), atol=1e-6)
    # β = 0.1 never switches on for K = 3 (max p ≥ 1/3).
    np.testing.assert_allclose(DCP(beta=0.1)(unsure), unsure, atol=1e-6)


def test_extreme_probabilities_are_finite():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1 - 1e-9, 1e-9, 0.0]])
    for post in (ReverseSigmoid(beta=1.5), DCP(beta=1.5), ReverseSigmoid(beta=50.0)):
        y = post(p)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
        yt = post(torch.tensor(p, dtype=torch.float32))
        assert torch.isfinite(yt).all()


def test_rs_keeps_top1_in_swept_range():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3, size=(500, 10))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for beta in (0.0025, 0.08, 0.32, 1.28):
        assert (ReverseSigmoid(beta=beta)(p).argmax(1) == p.argmax(1)).mean() > 0.97


@pytest.mark.parametrize("kw", [dict(beta=-1.0), dict(beta=float("nan")), dict(beta=1.0, gamma=0.0)])
def test_bad_parameters_raise_sentences(kw):
    with pytest.raises(ValueError, match=r"must be .*\.$"):
        ReverseSigmoid(**kw)
    with pytest.raises(ValueError, match=r"must be .*\.$"):
        DCP(**kw)
    with pytest.raises(ValueError, match="nu must be"):
        DCP(beta=0.5, nu=-3)


def test_parse_defense():
    assert parse_defense(None) is None and parse_defense("none") is None
    assert parse_defense("rs:beta=0.5,gamma=0.2") == ReverseSigmoid(0.5, 0.2)
    assert parse_defense("rs:beta=0.5") == ReverseSigmoid(0.5, 0.1)
    assert parse_defense("DCP: beta=1, nu=500") == DCP(1.0, 0.1, 500.0)
    assert parse_defense(DCP(0.5).spec) == DCP(0.5)
    for bad, msg in [
        ("xx:beta=1", "Unknown defence"),
        ("rs:beta=1,nu=3", "takes beta, gamma"),
        ("rs:gamma=0.1", "does not set beta"),
        ("rs:beta=abc", "not a number"),
        ("rs:beta=1,beta=2", "twice"),
        ("dcp:beta=-1", "out of range"),
        ("rs:beta", "takes beta"),
    ]:
        with pytest.raises(DivqatError, match=msg):
            parse_defense(bad)
