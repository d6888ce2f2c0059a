"""CLI smoke test on synthetic data: train → quantize (PTQ, DivQAT) → export → evaluate, and one-line errors."""

from __future__ import annotations

import json

import torch

from divqat_tvm.cli import main
from divqat_tvm.train.checkpoint import load_checkpoint

torch.set_num_threads(1)
DATA = "synthetic:1x12x12:4"


def test_cli_train_quantize_export_evaluate(tmp_path, capsys) -> None:
    t = tmp_path / "teacher.pt"
    common = ["--no-progress", "--threads", "1"]
    assert main(["train", "--dataset", DATA, "--arch", "tinycnn", "--epochs", "2", "--out", str(t), *common]) == 0
    assert "test accuracy" in capsys.readouterr().out
    _, meta = load_checkpoint(t, kind="float")
    assert meta["dataset"] == DATA and meta["metrics"]["epochs"] == 2 and len(meta["metrics"]["history"]) == 2

    assert main(["quantize", str(t), "--method", "ptq", "--out", str(tmp_path / "ptq.pt"), *common]) == 0
    s = tmp_path / "div.pt"
    args = [
        "quantize",
        str(t),
        "--method",
        "divqat",
        "--alpha",
        "0.5",
        "--kl-cap",
        "0.2",
        "--kl-direction",
        "student_teacher",
        "--epochs",
        "1",
        "--out",
        str(s),
    ]
    assert main([*args, *common]) == 0
    out = capsys.readouterr().out
    assert "divqat student" in out and "KL(teacher ‖ student)" in out
    student, smeta = load_checkpoint(s, kind="quantized")
    assert (smeta["method"], smeta["alpha"], smeta["kl_cap"], smeta["kl_direction"]) == (
        "divqat",
        0.5,
        0.2,
        "student_teacher",
    )
    assert smeta["metrics"]["kl_teacher_student"] >= 0

    o = tmp_path / "div.onnx"
    assert main(["export", str(s), "--out", str(o)]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 100.00 %" in out or "top-1 agreement 99." in out

    j = tmp_path / "eval.json"
    assert main(["evaluate", str(o), str(s), "--json", str(j)]) == 0
    r = json.loads(j.read_text())
    assert r["n"] == 128 and r["agreement"] >= 0.995 and r["mean_kl_a_b"] < 1e-3
    assert r["a"]["accuracy"] == r["b"]["accuracy"]


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint") and "missing.pt" in err[0]
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pt" in err[0]
    assert main(["quantize", str(bad), "--method", "nonsense"]) == 2
    assert "unknown quantization method" in capsys.readouterr().err
