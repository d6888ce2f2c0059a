"""The fail-not-skip rule of tests/conftest.py: a missing tool fails a test unless the developer opts out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

TEST = """
import pytest

@pytest.mark.needs_tools("divqat-no-such-tool")
def test_needs_a_missing_tool():
    pass

@pytest.mark.needs_tools(needs_files=("/no/such/file",))
def test_needs_a_missing_file():
    pass

@pytest.mark.needs_tools("sh")
def test_needs_a_present_tool():
    pass
"""


def _run(tmp_path: Path, opt_out: bool) -> str:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if k != "DIVQAT_ALLOW_MISSING_TOOLS"}
    if opt_out:
        env["DIVQAT_ALLOW_MISSING_TOOLS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    return proc.stdout


def test_missing_tool_fails_and_names_the_fix(tmp_path: Path) -> None:
    out = _run(tmp_path, opt_out=False)
    assert "1 passed, 2 errors" in out  # setup fails: pytest counts it as an error
    assert "missing divqat-no-such-tool: run scripts/setup.sh" in out


def test_opt_out_skips_instead(tmp_path: Path) -> None:
    assert "1 passed, 2 skipped" in _run(tmp_path, opt_out=True)
