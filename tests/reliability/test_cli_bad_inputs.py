"""No tracebacks (issue #19): a table of user mistakes, each driven through `divqat_tvm.cli.main(argv)` in
process. Every one ends in exactly one line on stderr that names the problem (and the path or value at fault)
and the fix, with exit code 2 (a mistake), 1 (a failure that is not the user's: the traceback goes to a file
the line names) or 130 (Ctrl-C: the same command resumes)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace of bad inputs: files where directories belong, garbage models, logs, configs, arrays."""
    from divqat_tvm.models import build_model
    from divqat_tvm.train.checkpoint import save_checkpoint

    t = tmp_path_factory.mktemp("bad")
    shutil.copytree(FIXTURE, t / "b")
    (t / "file").write_text("x")
    (t / "empty").mkdir()
    (t / "garbage.onnx").write_bytes(os.urandom(300))
    (t / "bad.npy").write_bytes(b"not npy")
    np.save(t / "shape.npy", np.zeros((2, 3, 3), np.float32))
    (t / "bad.toml").write_text("[datasets\nx=")
    (t / "nonutf8.toml").write_bytes(b"\xff\xfe[a]")
    (t / "garbage.qlog").write_bytes(os.urandom(100))
    (t / "json.pt").write_text('{"a": 1}')
    for name, text in (("badmanifest", "{nope"), ("u8manifest", None)):
        shutil.copytree(t / "b", t / name)
        if text is None:
            (t / name / "manifest.json").write_bytes(b"\xff\xfe{}")
        else:
            (t / name / "manifest.json").write_text(text)
    save_checkpoint(
        t / "float.pt",
        build_model("tinycnn", 1, 10, 28),
        {
            "arch": "tinycnn",
            "dataset": "mnist5k",
            "input_shape": [1, 28, 28],
            "num_classes": 10,
            "normalization": {"mean": [0.1307], "std": [0.3081]},
        },
    )
    return t


TEST_SET = ["--test-set", "synthetic:1x4x4:4"]
SYN = [*TEST_SET, "--budget", "1792"]


def _attack(victim: str, out: str, *more: str, attack: str = "dfme") -> list[str]:
    """argv of `divqat-tvm attack` against `victim`, written to `out`."""
    return ["attack", "--attack", attack, "--victim", victim, "--out", out, *more]


#: (id, argv with {T} for the workspace, what the line must say, exit code)
TABLE = [
    ("model-is-dev-null", ["compile", "/dev/null", "--out", "{T}/o1"], "/dev/null does not exist or is not a file", 2),
    ("model-is-directory", ["compile", "{T}/empty", "--out", "{T}/o2"], "{T}/empty does not exist or is not a file", 2),
    ("model-missing", ["compile", "{T}/missing.onnx", "--out", "{T}/o3"], "missing.onnx does not exist", 2),
    ("model-garbage", ["compile", "{T}/garbage.onnx", "--out", "{T}/o4"], "is not a readable ONNX model", 2),
    ("model-is-checkpoint", ["compile", "{T}/float.pt", "--out", "{T}/o4"], "is not a readable ONNX model", 2),
    (
        "unknown-target",
        ["compile", "{T}/garbage.onnx", "--target", "nope", "--out", "{T}/o5"],
        "unknown target 'nope'",
        2,
    ),
    ("bad-size-option", ["compile", "{T}/garbage.onnx", "--flash", "12Q", "--out", "{T}/o6"], "'12Q' is not a size", 2),
    ("unknown-command", ["nosuchcmd"], "No such command 'nosuchcmd'", 2),
    ("unknown-option", ["build", "{T}/b", "--nope"], "No such option: --nope", 2),
    ("missing-argument", ["build"], "Missing argument", 2),
    ("not-an-int", ["models", "--classes", "x"], "Invalid value for '--classes'", 2),
    ("bad-shape", ["models", "--input-shape", "3x32"], "'3x32' is not CxHxW", 2),
    ("build-dev-null", ["build", "/dev/null"], "/dev/null has no manifest.json", 2),
    ("build-file", ["build", "{T}/file"], "{T}/file has no manifest.json", 2),
    ("build-empty-dir", ["build", "{T}/empty"], "{T}/empty has no manifest.json", 2),
    ("unknown-board", ["build", "{T}/b", "--board", "nope"], "unknown board 'nope'", 2),
    ("unknown-defence", ["build", "{T}/b", "--defense", "xyz"], "Unknown defence 'xyz'", 2),
    ("defence-not-a-number", ["build", "{T}/b", "--defense", "rs:beta=abc"], "beta='abc' is not a number", 2),
    ("stack-too-small", ["build", "{T}/b", "--stack-bytes", "100"], "100 bytes is not usable", 2),
    ("manifest-not-json", ["build", "{T}/badmanifest"], "manifest.json is not valid JSON", 2),
    ("manifest-not-utf8", ["build", "{T}/u8manifest"], "not UTF-8", 2),
    ("inputs-missing", ["emulate", "{T}/b", "--inputs", "{T}/missing.npy"], "missing.npy does not exist", 2),
    ("inputs-not-npy", ["emulate", "{T}/b", "--inputs", "{T}/bad.npy"], "bad.npy is not a readable .npy array", 2),
    ("inputs-wrong-shape", ["emulate", "{T}/b", "--inputs", "{T}/shape.npy"], "the model takes [N, 1, 4, 4]", 2),
    ("emulate-real-board", ["emulate", "{T}/b", "--board", "nucleo-h743zi2"], "is a real board, not a QEMU machine", 2),
    ("unknown-transfer", ["emulate", "{T}/b", "--transfer", "bogus"], "unknown --transfer 'bogus'", 2),
    (
        "json-under-a-file",
        ["emulate", "{T}/b", "--json", "{T}/file/x.json", "--random", "1"],
        "{T}/file is a file, but a directory is expected",
        2,
    ),
    (
        "flash-qemu-board",
        ["flash", "{T}/b", "--board", "mps2-an500"],
        "is a QEMU machine; there is nothing to flash",
        2,
    ),
    (
        "serial-port-missing",
        ["footprint", "{T}/b", "--port", "/dev/does-not-exist", "--board", "nucleo-h743zi2"],
        "cannot open the serial port /dev/does-not-exist",
        2,
    ),
    (
        "victim-serial-missing",
        _attack("serial:/dev/does-not-exist@{T}/b", "{T}/a1", *SYN),
        "cannot open the serial port /dev/does-not-exist",
        2,
    ),
    (
        "victim-unknown-backend",
        _attack("bogus:x", "{T}/a2"),
        "Unknown victim backend 'bogus'",
        2,
    ),
    (
        "victim-build-missing",
        _attack("qemu:{T}/missing", "{T}/a3", *SYN),
        "{T}/missing is not a compiled build",
        2,
    ),
    (
        "victim-real-board-as-qemu",
        _attack("qemu:{T}/b@nucleo-h743zi2", "{T}/a3", *SYN),
        "'nucleo-h743zi2' is not a QEMU machine",
        2,
    ),
    (
        "victim-checkpoint-dev-null",
        _attack("torch:/dev/null", "{T}/a4"),
        "checkpoint /dev/null",
        2,
    ),
    (
        "victim-checkpoint-directory",
        _attack("torch:{T}/empty", "{T}/a5"),
        "checkpoint {T}/empty",
        2,
    ),
    (
        "unknown-attack",
        _attack("tvm-host:{T}/b", "{T}/a6", *SYN, attack="nonsense"),
        "Unknown attack 'nonsense'",
        2,
    ),
    (
        "budget-below-one-iteration",
        _attack("tvm-host:{T}/b", "{T}/a7", *TEST_SET, "--budget", "10"),
        "budget 10 is below the cost",
        2,
    ),
    (
        "attack-out-is-a-file",
        _attack("tvm-host:{T}/b", "{T}/file", *SYN),
        "{T}/file is a file, but a directory is expected",
        2,
    ),
    ("replay-missing", ["attack", "--replay", "{T}/missing.qlog"], "No query log at {T}/missing.qlog", 2),
    ("replay-garbage", ["attack", "--replay", "{T}/garbage.qlog"], "is not a divqat-tvm query log", 2),
    ("toml-malformed", ["experiment", "{T}/bad.toml", "--out", "{T}/e1"], "is not valid TOML", 2),
    ("toml-not-utf8", ["experiment", "{T}/nonutf8.toml", "--out", "{T}/e2"], "not UTF-8", 2),
    ("config-missing", ["experiment", "{T}/missing.toml", "--out", "{T}/e3"], "missing.toml does not exist", 2),
    (
        "config-is-directory",
        ["experiment", "{T}/empty", "--out", "{T}/e4"],
        "A directory stands where a file is expected",
        2,
    ),
    (
        "experiment-out-is-a-file",
        ["experiment", str(ROOT / "configs" / "embedded.toml"), "--out", "{T}/file"],
        "{T}/file is a file, but a directory is expected",
        2,
    ),
    ("report-not-a-run", ["report", "{T}/empty"], "holds no experiment.json", 2),
    ("report-dev-null", ["report", "/dev/null"], "/dev/null holds no experiment.json", 2),
    ("teacher-dev-null", ["quantize", "/dev/null", "--out", "{T}/q1"], "checkpoint /dev/null", 2),
    (
        "checkpoint-wrong-kind",
        ["export", "{T}/float.pt", "--out", "{T}/x.onnx"],
        "holds a float model, but this step needs an int8 student",
        2,
    ),
    ("checkpoint-not-torch", ["evaluate", "{T}/json.pt"], "is not a readable divqat-tvm checkpoint", 2),
    ("unknown-dataset", ["train", "--dataset", "nope", "--out", "{T}/t1.pt"], "Unknown dataset 'nope'", 2),
    ("data-dir-is-a-file", ["datasets", "--data-dir", "/dev/null"], "--data-dir /dev/null is not a directory", 2),
]


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert rc == code, (rc, err)
    assert "Traceback" not in err
    # exactly one error line (a progress bar may precede it on stderr, never a second message)
    assert sum(ln.startswith("error: ") for ln in err.splitlines()) == (1 if code in (1, 2) else 0), err
    return last


def test_the_table_is_big_enough():
    assert len(TABLE) >= 30 and len({t[0] for t in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("argv", "says", "code"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_bad_input_is_one_line(ws, capsys, argv, says, code):
    line = _one_line(capsys, [a.replace("{T}", str(ws)) for a in argv], code)
    assert line.startswith("error: ") and says.replace("{T}", str(ws)) in line, line
    assert len(line) > len(says) + 20  # the fix follows the problem


@pytest.mark.parametrize(
    ("err", "says"), [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"), (errno.EACCES, "permissions")]
)
def test_output_directory_refusals(ws, tmp_path, capsys, monkeypatch, err, says):
    """Read-only, full or forbidden output (root, as CI runs, writes through permission bits: so the file system's
    refusal is injected where the build writes)."""
    from divqat_tvm.device import build as B

    shutil.copytree(FIXTURE, tmp_path / "b")

    def refuse(path, *a, **k):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(B, "atomic_write_text", refuse)
    line = _one_line(capsys, ["build", str(tmp_path / "b"), "--force"], 2)
    assert says in line and str(tmp_path / "b") in line


def test_ctrl_c_is_a_clean_stop(ws, capsys, monkeypatch):
    from divqat_tvm.device import build as B

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(B, "build_firmware", interrupted)
    assert main(["emulate", str(ws / "b")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "aborted (the same command resumes where it stopped)"


def test_an_unexpected_failure_is_one_line_and_exit_1(ws, capsys, monkeypatch):
    from divqat_tvm.device import build as B

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(B, "build_firmware", bug)
    monkeypatch.delenv("DIVQAT_TRACEBACK", raising=False)
    line = _one_line(capsys, ["build", str(ws / "b")], 1)
    assert "internal error (ZeroDivisionError" in line
    path = line.split("the traceback is in ")[1].split(". ")[0]
    assert "ZeroDivisionError" in Path(path).read_text()
    os.unlink(path)
