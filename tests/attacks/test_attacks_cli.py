"""`divqat-tvm attack` end to end on a tiny synthetic victim checkpoint: run, resume (nothing re-asked),
replay offline, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from divqat_tvm.cli import main

SYN = "synthetic:1x8x8:10"


@pytest.fixture
def victim_ckpt(tmp_path):
    from divqat_tvm.models import build_model
    from divqat_tvm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("tinycnn", 1, 10, 8).eval()
    meta = {
        "arch": "tinycnn",
        "dataset": SYN,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "normalization": {"mean": [0.5], "std": [0.25]},
        "method": "float",
    }
    path = tmp_path / "victim.pt"
    save_checkpoint(path, model, meta)
    return path


def test_attack_resume_and_replay(tmp_path, victim_ckpt, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = [
        "attack",
        "--attack",
        "maze",
        "--victim",
        f"torch:{victim_ckpt}",
        "--budget",
        "600",
        "--batch-size",
        "8",
        "--ndirs",
        "3",
        "--latent-dim",
        "8",
        "--ngf",
        "8",
        "--student",
        "tinycnn",
        "--test-set",
        SYN,
        "--out",
        str(out),
        "--seed",
        "1",
    ]
    assert main(args) == 0
    first = json.loads((out / "result.json").read_text())
    assert (
        first["queries_used"] == first["queries_sent_this_run"] == (600 // 64) * 64
    )  # cost 8·((5 − 1) + (1 + 3)·1) = 64
    assert (
        first["budget"] == 600
        and first["config"]["ndirs"] == 3
        and first["config"]["ngf"] == 8
        and 0 <= first["fidelity"] <= 1
    )
    assert "separate evaluation oracle" in first["fidelity_reference"]
    # Same command again: everything comes from the log.
    assert main(args) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["queries_sent_this_run"] == 0 and again["queries_replayed_from_log"] == first["queries_used"]
    assert again["stolen_accuracy"] == first["stolen_accuracy"]
    # Offline replay into a new student, no victim.
    assert (
        main(
            [
                "attack",
                "--replay",
                str(out / "queries.qlog"),
                "--test-set",
                SYN,
                "--epochs",
                "2",
                "--out",
                str(tmp_path / "rep"),
            ]
        )
        == 0
    )
    rep = json.loads((tmp_path / "rep" / "result.json").read_text())
    assert rep["queries_sent"] == 0 and rep["queries_in_log"] == first["queries_used"] and rep["loss"] == "maze"
    assert "budget 600 queries" in capsys.readouterr().out


def test_attack_errors(tmp_path, victim_ckpt, capsys):
    base = ["attack", "--victim", f"torch:{victim_ckpt}", "--test-set", SYN, "--out", str(tmp_path / "x")]
    assert main(base + ["--attack", "steal"]) == 2
    assert "Unknown attack" in capsys.readouterr().err
    assert main(base + ["--attack", "dfme", "--budget", "10"]) == 2
    assert "below the cost of one iteration" in capsys.readouterr().err
    assert main(["attack", "--attack", "dfme"]) == 2
    assert "needs --attack, --victim and --out" in capsys.readouterr().err
    assert main(base + ["--attack", "knockoff", "--defense", "rs:bta=1"]) == 2
    assert "takes beta, gamma" in capsys.readouterr().err


def test_epsilon_note_warns_only_below_one_input_level_of_an_int8_victim():
    from divqat_tvm.cli.attack import epsilon_note

    mnist = ((1, 28, 28), [0.3084])  # one 8-bit level = 1/(255·0.3084) = 0.0127; √784 = 28
    note = epsilon_note(1e-3, True, *mnist)
    assert note and "less than one 8-bit input level" in note and "0.0127" in note and "--epsilon 0.4 or more" in note
    assert epsilon_note(1.0, True, *mnist) is None  # 1/28 = 0.036 per pixel, about 3 levels
    assert epsilon_note(1e-3, False, *mnist) is None  # a float victim's answers move smoothly
    assert epsilon_note(0.5, True, (3, 32, 32), [0.2, 0.25, 0.3]) is not None  # 0.5/55 = 0.009 < 1/(255·0.3)


def test_no_log_inputs_resumes_and_refuses_replay(tmp_path, victim_ckpt, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = [
        "attack",
        "--attack",
        "dfme",
        "--victim",
        f"torch:{victim_ckpt}",
        "--budget",
        "448",
        "--batch-size",
        "16",
        "--latent-dim",
        "8",
        "--ngf",
        "4",
        "--test-set",
        SYN,
        "--out",
        str(out),
        "--no-log-inputs",
    ]
    assert main(args) == 0
    assert main(args) == 0  # resumed from the answers-only log
    again = json.loads((out / "result.json").read_text())
    assert again["queries_sent_this_run"] == 0 and again["queries_replayed_from_log"] == 448
    assert main(args[:-1]) == 2  # the same folder with images logged is another set-up
    assert "log_inputs" in capsys.readouterr().err
    assert (
        main(["attack", "--replay", str(out / "queries.qlog"), "--test-set", SYN, "--out", str(tmp_path / "rep")]) == 2
    )
    assert "keeps only the answers" in capsys.readouterr().err
