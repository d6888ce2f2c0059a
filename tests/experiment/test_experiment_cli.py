"""The experiment/report/demo commands: registered, re-rendering from JSON, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

from divqat_tvm.cli import main


def test_commands_are_registered(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("experiment", "report", "demo"))


def test_report_command_rerenders_a_run(tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    try:
        from test_report_render import make_run
    finally:
        sys.path.pop(0)
    run = make_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").exists() and "report.md" in capsys.readouterr().out


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["experiment", str(tmp_path / "nope.toml")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert main(["demo", "--backend", "gpu", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["error"] * 3 and "Traceback" not in "".join(err)
