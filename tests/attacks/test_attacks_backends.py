"""The attacks through the device backends: the firmware under QEMU collects exactly the answers the
same C built for the host (tvm-host) gives, with and without an on-device defence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from divqat_tvm.attacks import FitConfig, KnockoffConfig, QueryLog, run_attack
from divqat_tvm.oracle import open_oracle

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"

pytestmark = [
    pytest.mark.emulator,
    pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm", needs_files=(FIXTURE,)),
]


class Gaussian4x4(torch.utils.data.Dataset):
    def __init__(self, n: int = 300) -> None:
        g = torch.Generator().manual_seed(4)
        self.x = torch.randn(n, 1, 4, 4, generator=g) * 0.5
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


@pytest.mark.parametrize("defense", [None, "dcp:beta=0.6"])
def test_knockoff_qemu_equals_tvm_host(tmp_path, defense):
    torch.set_num_threads(1)
    build = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, build)
    cfg = KnockoffConfig(budget=160, policy="adaptive", query_batch=8, fit=FitConfig(epochs=1))
    answers = {}
    for kind in ("tvm-host", "qemu"):
        torch.manual_seed(0)
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
        with open_oracle(f"{kind}:{build}", defense=defense, budget=cfg.budget) as oracle:
            r = run_attack("knockoff", oracle, student, tmp_path / kind, cfg, seed=1, surrogate=Gaussian4x4())
            assert oracle.queries == r["queries_used"] == 160
        answers[kind] = QueryLog.read(tmp_path / kind / "queries.qlog").arrays()
    np.testing.assert_array_equal(answers["qemu"][0], answers["tvm-host"][0])
    np.testing.assert_array_equal(answers["qemu"][1], answers["tvm-host"][1])  # bit-exact, atol = 0


@pytest.mark.parametrize("attack", ["dfme", "maze"])
def test_data_free_attacks_qemu_equal_tvm_host(tmp_path, attack):
    # The generator's queries reach the firmware as int8 and its answers come back bit-exact, so the whole
    # attack (queries, answers, the student) is the same on the emulated device as on the host build.
    from divqat_tvm.attacks import DFMEConfig, MAZEConfig

    torch.set_num_threads(1)
    build = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, build)
    cfg = (
        DFMEConfig(budget=8 * 7 * 2, batch_size=8, ngf=4, nz=8, grad_epsilon=1.0)
        if attack == "dfme"
        else MAZEConfig(budget=8 * 15 * 2, batch_size=8, ngf=4, latent_dim=8, mu=1.0)
    )
    answers, students = {}, {}
    for kind in ("tvm-host", "qemu"):
        torch.manual_seed(0)
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
        with open_oracle(f"{kind}:{build}", budget=cfg.budget) as oracle:
            r = run_attack(attack, oracle, student, tmp_path / kind, cfg, seed=1)
            assert oracle.queries == r["queries_used"] == cfg.budget
        answers[kind] = QueryLog.read(tmp_path / kind / "queries.qlog").arrays()
        students[kind] = student.state_dict()
    np.testing.assert_array_equal(answers["qemu"][0], answers["tvm-host"][0])
    np.testing.assert_array_equal(answers["qemu"][1], answers["tvm-host"][1])
    for name, value in students["qemu"].items():
        torch.testing.assert_close(value, students["tvm-host"][name], rtol=0, atol=0)
