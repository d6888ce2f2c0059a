"""The data-free tuning scripts run end to end on a tiny synthetic victim and write what they print."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SYN = "synthetic:1x8x8:10"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def victim(tmp_path):
    from divqat_tvm.models import build_model
    from divqat_tvm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "victim.pt"
    save_checkpoint(
        path,
        build_model("tinycnn", 1, 10, 8).eval(),
        {
            "arch": "tinycnn",
            "dataset": SYN,
            "input_shape": [1, 8, 8],
            "num_classes": 10,
            "normalization": {"mean": [0.5], "std": [0.25]},
            "method": "float",
        },
    )
    return f"torch:{path}"


def test_zo_step_probe_sees_a_float_victim_move_at_every_step(tmp_path, victim, capsys):
    out = tmp_path / "probe.json"
    assert (
        _script("zo_step_probe").main(
            ["--victim", victim, "--eps", "1e-3", "1", "--images", "4", "--dirs", "5", "--out", str(out)]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["eps"] for r in rows] == [1e-3, 1.0]
    assert all(r["changed_fraction"] > 0.9 and r["mean_abs_dlogp_per_eps"] > 0 for r in rows)
    # one 8-bit level is 1/(255·0.25); a unit direction over 64 pixels moves each by eps/8
    assert rows[1]["pixel_move_in_input_levels"] == pytest.approx(1.0 / 8 * 255 * 0.25)
    assert "answers changed" in capsys.readouterr().out
    assert _script("zo_step_probe").main(["--victim", f"torch:{tmp_path / 'missing.pt'}"]) == 2
    assert "error:" in capsys.readouterr().err


def test_datafree_sweep_runs_each_set_with_each_seed(tmp_path, victim, capsys):
    out = tmp_path / "sweep.json"
    sweep = _script("datafree_sweep")
    args = [
        "--victim",
        victim,
        "--attack",
        "maze",
        "--budget",
        "320",
        "--base",
        "batch_size=8,ngf=4,latent_dim=8,ndirs=3",
        "--set",
        "mu=0.001",
        "--set",
        "mu=1,lr_gen=0.001",
        "--seeds",
        "0",
        "1",
        "--test-set",
        SYN,
        "--out",
        str(out),
    ]
    assert sweep.main(args) == 0
    res = json.loads(out.read_text())
    assert [r["set"] for r in res["rows"]] == [{"mu": 0.001}, {"mu": 1.0, "lr_gen": 0.001}]
    assert all([run["seed"] for run in r["runs"]] == [0, 1] for r in res["rows"])
    assert res["rows"][1]["config"]["mu"] == 1.0 and res["rows"][1]["config"]["generator_output"] == "clip"
    assert "stolen acc" in capsys.readouterr().out
    assert sweep.main(args[:-2] + ["--set", "wings=2"]) == 2
    assert "not k=v with k a field of MAZEConfig" in capsys.readouterr().err
    assert sweep.main(args[:-2] + ["--set", "ndirs=0"]) == 2
    assert "ndirs must be at least 1" in capsys.readouterr().err


def test_budget_curves_write_json_and_png_and_resume(tmp_path, victim, capsys):
    out = tmp_path / "budget"
    args = [
        "--victim",
        victim,
        "--profile",
        "quick",
        "--attacks",
        "dfme",
        "maze",
        "--budgets",
        "300",
        "600",
        "--seeds",
        "0",
        "1",
        "--test-set",
        SYN,
        "--out",
        str(out),
    ]
    mod = _script("budget_curves")
    assert mod.main(args) == 0
    data = json.loads((out / "budget_curves.json").read_text())
    assert [p["budget"] for p in data["curves"]["dfme"]] == [300, 600] and data["curves"]["maze"][1]["n"] == 2
    assert all(r["queries"] <= r["budget"] for r in data["runs"])
    assert (out / "budget_curves.png").read_bytes()[:4] == b"\x89PNG"
    first = (out / "budget_curves.json").read_bytes()
    assert mod.main(args) == 0  # finished points are read back, not re-run: the same figures
    assert json.loads((out / "budget_curves.json").read_bytes())["runs"] == json.loads(first)["runs"]
    assert mod.main([*args[:-2], "--profile", "nosuch"]) == 2 and "error:" in capsys.readouterr().err
