"""Each attack steals a tiny synthetic victim well above chance (10 %) with a tiny budget, and spends
exactly its budget formula at the victim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_fixtures import SHAPE, CountingOracle, K, SurrogateSet, make_student, make_victim
from divqat_tvm.attacks.dfme import DFMEConfig, estimate_gradient
from divqat_tvm.attacks.knockoff import KnockoffConfig, bandit_update
from divqat_tvm.attacks.maze import MAZEConfig, zoge_backward
from divqat_tvm.attacks.runner import run_attack
from divqat_tvm.attacks.training import FitConfig
from divqat_tvm.oracle.backend_torch import TorchOracle

FIT = FitConfig(epochs=30, lr=0.1, momentum=0.9)
DFME = DFMEConfig(budget=12_000, batch_size=32, epoch_itrs=5, ngf=8, nz=16)
MAZE = MAZEConfig(budget=6_000, batch_size=32, ngf=8, latent_dim=16, ndirs=4)


def victim():
    return CountingOracle(TorchOracle(make_victim(), SHAPE, K))


@pytest.mark.parametrize("policy", ["random", "adaptive"])
def test_knockoff_steals(tmp_path, evaluator, policy):
    v = victim()
    r = run_attack(
        "knockoff",
        v,
        make_student(),
        tmp_path,
        KnockoffConfig(budget=400, policy=policy, fit=FIT),
        surrogate=SurrogateSet(),
        evaluator=evaluator,
    )
    assert r["stolen_accuracy"] > 0.6 and r["fidelity"] == r["stolen_accuracy"]
    assert v.queries == r["queries_used"] == 400


def test_dfme_steals_and_spends_exactly_its_formula(tmp_path, evaluator):
    v = victim()
    r = run_attack("dfme", v, make_student(), tmp_path, DFME, evaluator=evaluator)
    cost = 32 * (1 * (1 + 1) + 5)
    assert DFME.cost_per_iteration == cost and r["iterations"] == 12_000 // cost
    assert v.queries == r["queries_used"] == (12_000 // cost) * cost
    # Per iteration: one generator call of N(m+1) points, then d_iter student calls of N.
    assert [len(x) for x in v.seen[:6]] == [64, 32, 32, 32, 32, 32]
    assert r["stolen_accuracy"] > 0.2


def test_maze_steals_and_spends_exactly_its_formula(tmp_path, evaluator):
    v = victim()
    r = run_attack("maze", v, make_student(), tmp_path, MAZE, evaluator=evaluator)
    cost = 32 * ((5 - 1) + (1 + 4) * 1)
    assert MAZE.cost_per_iteration == cost and r["iterations"] == 6_000 // cost
    assert v.queries == r["queries_used"] == (6_000 // cost) * cost
    assert [len(x) for x in v.seen[:5]] == [160, 32, 32, 32, 32]
    assert r["replay_size"] == 32 * r["iterations"]
    assert r["stolen_accuracy"] > 0.3


def test_official_default_costs():
    assert DFMEConfig().cost_per_iteration == 256 * (1 * 2 + 5)
    assert DFMEConfig().iterations == 20_000_000 // 1792
    assert MAZEConfig().cost_per_iteration == 128 * (4 + 11)
    with pytest.raises(ValueError, match="below the cost of one iteration"):
        DFMEConfig(budget=100)
    with pytest.raises(ValueError, match="policy must be"):
        KnockoffConfig(policy="greedy")


def test_forward_difference_estimate_points_along_the_true_gradient():
    # With the victim = a fixed net, the estimate of d(-L1)/dx_pre should correlate with autograd's.
    torch.manual_seed(0)
    v = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, K)).eval()  # smooth: no tiny p clamped
    oracle = TorchOracle(v, SHAPE, K)
    student = make_student().eval()
    x_pre = torch.randn(4, *SHAPE)
    cfg = DFMEConfig(budget=10**6, grad_m=400, grad_epsilon=1e-3)
    est, _ = estimate_gradient(oracle, student, x_pre, cfg, torch.Generator().manual_seed(1))
    xp = x_pre.clone().requires_grad_(True)
    x = torch.tanh(xp)
    logp = torch.log_softmax(v(x), 1)  # the black box varies with x too
    t = logp - logp.mean(1, keepdim=True)
    # The official scaling: d(−L1_i)/dx_pre_i divided by K·N (N = 4 samples).
    (-(student(x) - t).abs().mean(1).sum() / (K * 4)).backward()
    true = xp.grad.flatten(1)
    cos = torch.nn.functional.cosine_similarity(est.flatten(1), true, dim=1)
    assert (cos > 0.8).all(), cos
    ratio = est.flatten(1).norm(dim=1) / true.norm(dim=1)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio


def test_bandit_update_matches_the_textbook_rule():
    h = np.array([0.0, 1.0, -1.0])
    pi = np.exp(h) / np.exp(h).sum()
    new = bandit_update(h, action=2, reward=3.0, baseline=1.0, lr=0.5)
    expected = h - 0.5 * 2.0 * pi
    expected[2] = h[2] + 0.5 * 2.0 * (1 - pi[2])
    np.testing.assert_allclose(new, expected)


@pytest.mark.parametrize("mode", ["tanh-range", "clip"])
@pytest.mark.parametrize("attack", ["dfme", "maze"])
def test_generator_output_keeps_queries_in_the_victims_pixel_range(tmp_path, attack, mode):
    v = victim()
    bounds = dict(generator_output=mode, pixel_low=(-0.4,), pixel_high=(2.8,))
    cfg = (
        DFMEConfig(budget=7 * 16 * 2, batch_size=16, ngf=4, nz=8, **bounds)
        if attack == "dfme"
        else MAZEConfig(budget=15 * 16 * 2, batch_size=16, ngf=4, latent_dim=8, **bounds)
    )
    run_attack(attack, v, make_student(), tmp_path, cfg)
    x = np.concatenate(v.seen)
    assert x.min() >= -0.4 - 1e-6 and x.max() <= 2.8 + 1e-6
    assert x.max() > 1.2  # uses the range beyond tanh's [-1, 1]
    if mode == "clip":  # x_pre is zero-mean, unit-variance: a third of it sits at the dark bound, the mean stays near 0
        assert (x == np.float32(-0.4)).mean() > 0.2 and abs(x.mean()) < 0.5
    else:  # tanh's zero maps to the middle of the range: mid-grey on average
        assert abs(x.mean() - 1.2) < 0.5


def test_output_map_checks_bounds():
    from divqat_tvm.attacks.generators import output_map

    with pytest.raises(ValueError, match="one low and one high per channel"):
        output_map("tanh-range", (0.0,), ())
    with pytest.raises(ValueError, match="generator_output must be one of"):
        output_map("sigmoid")
    with pytest.raises(ValueError, match="needs the victim's pixel bounds"):
        output_map("clip")
    with pytest.raises(ValueError, match="generator_output must be one of"):
        DFMEConfig(budget=10_000, generator_output="relu")
    x = torch.tensor([-50.0, 0.0, 0.5, 50.0]).view(1, 1, 4, 1).expand(1, 2, 4, 1)
    y = output_map("tanh-range", (0.0, -1.0), (1.0, 3.0))(x)
    np.testing.assert_allclose(y[0, :, [0, 1, 3], 0].numpy(), [[0.0, 0.5, 1.0], [-1.0, 1.0, 3.0]], atol=1e-6)
    y = output_map("clip", (0.0, -1.0), (1.0, 3.0))(x)
    np.testing.assert_allclose(y[0, :, :, 0].numpy(), [[0.0, 0.0, 0.5, 1.0], [-1.0, 0.0, 0.5, 3.0]], atol=1e-6)
    assert output_map("tanh", (0.0,), (1.0,)) is torch.tanh


def test_generators_last_batchnorm_is_affine_only_in_maze():
    from divqat_tvm.attacks.generators import Generator

    assert not Generator(8, (1, 8, 8), 4).to_image[1].affine  # DFME's GeneratorA
    assert Generator(8, (1, 8, 8), 4, final_affine=True).to_image[1].affine  # MAZE's conv3_gen


class Int8Victim(torch.nn.Module):
    """The synthetic victim as a device runs it: input rounded to 8-bit steps, logits rounded to int8 steps."""

    IN_STEP, OUT_STEP = 1 / (255 * 0.3081), 0.1  # one pixel level after MNIST normalisation; a typical logit scale

    def __init__(self) -> None:
        super().__init__()
        self.net = make_victim()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x / self.IN_STEP) * self.IN_STEP
        return torch.round(self.net(q) / self.OUT_STEP) * self.OUT_STEP


class ZeroStudent(torch.nn.Module):
    """A student that answers 0 everywhere, so the estimated gradient is the victim's term alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), K)


def _victim_term_gradient(attack: str, eps: float, x_pre: torch.Tensor) -> torch.Tensor:
    oracle, gen = TorchOracle(Int8Victim(), SHAPE, K), torch.Generator().manual_seed(3)
    if attack == "dfme":
        est, _ = estimate_gradient(
            oracle, ZeroStudent(), x_pre, DFMEConfig(budget=10**6, grad_m=200, grad_epsilon=eps), gen
        )
        return est
    xp = x_pre.clone().requires_grad_(True)
    zoge_backward(oracle, ZeroStudent(), xp, MAZEConfig(budget=10**6, ndirs=200, mu=eps), gen)
    return xp.grad


def _changed_fraction(eps: float, x_pre: torch.Tensor) -> float:
    """How often the int8 victim's answer at tanh(x_pre + eps·u) differs from its answer at tanh(x_pre)."""
    from divqat_tvm.attacks.dfme import unit_directions

    oracle = TorchOracle(Int8Victim(), SHAPE, K)
    u = unit_directions(len(x_pre), 50, SHAPE, torch.Generator().manual_seed(4))
    base = oracle.query(torch.tanh(x_pre).numpy())
    moved = oracle.query(torch.tanh(x_pre[:, None] + eps * u).view(-1, *SHAPE).numpy()).reshape(len(x_pre), 50, K)
    return float((np.abs(moved - base[:, None]).max(axis=2) > 0).mean())


@pytest.mark.parametrize("attack", ["dfme", "maze"])
def test_official_step_is_blind_to_an_int8_victim_and_a_pixel_sized_step_is_not(attack):
    # Why the quick profile uses grad_epsilon / mu = 1: a unit direction scaled by the official 1e-3 moves each
    # pixel by a hundredth of one 8-bit input level, so the int8 victim's answer mostly does not change, and
    # where it does it jumps by a whole output step: the finite differences are rare spikes, uncorrelated with
    # the slope. Scaled by 1, pixels move by about a level, nearly every answer changes, and the estimate follows
    # the gradient of the victim without its rounding.
    torch.manual_seed(0)
    x_pre = torch.randn(4, *SHAPE) * 0.6
    assert _changed_fraction(1e-3, x_pre) < 0.5 and _changed_fraction(1.0, x_pre) > 0.9
    xp = x_pre.clone().requires_grad_(True)
    logp = torch.log_softmax(make_victim()(torch.tanh(xp)), 1)
    target = (
        -(logp - logp.mean(1, keepdim=True)).abs().sum()
        if attack == "dfme"
        else -torch.nn.functional.kl_div(torch.full((4, K), -np.log(K)), logp.exp(), reduction="sum")
    )
    target.backward()

    def cos(eps: float) -> torch.Tensor:
        return torch.nn.functional.cosine_similarity(
            _victim_term_gradient(attack, eps, x_pre).flatten(1), xp.grad.flatten(1), dim=1
        )

    assert (cos(1.0) > 0.5).all() and (cos(1e-3).abs() < 0.3).all()
