"""What the file system refuses is one line with exit code 2, never a traceback; results get the user's umask."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from divqat_tvm.cli import _os_problem, main
from divqat_tvm.fileio import atomic_write_text

KWS = Path(__file__).resolve().parents[2] / "shared" / "models" / "kws_ref_model.tflite"


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_existing_file_as_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(KWS.read_bytes() if KWS.is_file() else b"TFL3")
    (tmp_path / "out").write_text("x")
    err = _one_line_error(capsys, ["compile", str(model), "--out", str(tmp_path / "out")])
    assert str(tmp_path / "out") in err


def test_non_utf8_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b"\xff\xfe[datasets]\n")
    assert "UTF-8" in _one_line_error(capsys, ["experiment", str(cfg), "--out", str(tmp_path / "run")])


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EACCES, "permissions"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "disk is full"),
        (errno.ENOTDIR, "directory is expected"),
    ],
)
def test_file_system_refusals_name_the_fix(code: int, fix: str) -> None:
    """Root (as CI runs) writes through permission bits, so each refusal is checked through its errno."""
    msg = _os_problem(OSError(code, os.strerror(code), "/runs/x"))
    assert "/runs/x" in msg and fix in msg and "\n" not in msg


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        p = atomic_write_text(tmp_path / "s.json", "{}")
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    finally:
        os.umask(old)
