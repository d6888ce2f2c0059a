"""Attack code reaches the victim only through query / queries / input_shape / num_classes."""

from __future__ import annotations

import pytest

from attack_fixtures import SHAPE, K, SurrogateSet, make_student, make_victim
from divqat_tvm.attacks import DFMEConfig, FitConfig, KnockoffConfig, MAZEConfig
from divqat_tvm.attacks.dfme import run_dfme
from divqat_tvm.attacks.knockoff import run_knockoff
from divqat_tvm.attacks.maze import run_maze
from divqat_tvm.oracle.backend_torch import TorchOracle

ALLOWED = {"query", "queries", "input_shape", "num_classes"}


class StrictProxy:
    """Forwards only the Oracle surface an attack may use; any other attribute access fails the test."""

    def __init__(self, oracle) -> None:
        object.__setattr__(self, "_target", oracle)
        object.__setattr__(self, "touched", set())

    def __getattribute__(self, name):
        if name in ("__class__", "__dict__", "touched"):
            return object.__getattribute__(self, name)
        if name not in ALLOWED:
            raise AssertionError(f"attack code touched oracle.{name}")
        object.__getattribute__(self, "touched").add(name)
        return getattr(object.__getattribute__(self, "_target"), name)


@pytest.mark.parametrize("attack", ["knockoff-random", "knockoff-adaptive", "dfme", "maze"])
def test_attacks_use_only_the_oracle_surface(attack):
    proxy = StrictProxy(TorchOracle(make_victim(), SHAPE, K))
    if attack.startswith("knockoff"):
        cfg = KnockoffConfig(budget=64, policy=attack.split("-")[1], fit=FitConfig(epochs=1))
        run_knockoff(proxy, make_student(), SurrogateSet(), cfg)
    elif attack == "dfme":
        run_dfme(proxy, make_student(), DFMEConfig(budget=2 * 8 * 7, batch_size=8, ngf=4, nz=8))
    else:
        run_maze(proxy, make_student(), MAZEConfig(budget=2 * 8 * 15, batch_size=8, ngf=4, latent_dim=8))
    assert "query" in proxy.touched


def test_the_proxy_really_blocks():
    proxy = StrictProxy(TorchOracle(make_victim(), SHAPE, K))
    with pytest.raises(AssertionError, match="touched oracle._answer"):
        proxy._answer  # noqa: B018
    with pytest.raises(AssertionError, match="touched oracle.budget"):
        proxy.budget  # noqa: B018


def test_torch_oracle_exposes_no_module():
    import torch

    oracle = TorchOracle(make_victim(), SHAPE, K)
    assert not any(isinstance(v, torch.nn.Module) for v in vars(oracle).values())
