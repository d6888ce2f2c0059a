"""Tests fail, not skip, when a tool the README's set-up installs is missing.

A test that needs external tools says so with `@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")`
(files, such as the MLPerf Tiny models in ../shared/models, with `needs_files=(path, ...)`). After
`scripts/setup.sh` every one of them is there, so a missing one means a broken install: the test fails and
says which. Developers on a partial machine may set DIVQAT_ALLOW_MISSING_TOOLS=1 to skip such tests instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

OPT_OUT = "DIVQAT_ALLOW_MISSING_TOOLS"


def missing_requirements(item: pytest.Item) -> list[str]:
    """Tools (not on PATH) and files (absent) that the item's needs_tools markers name."""
    missing: list[str] = []
    for mark in item.iter_markers("needs_tools"):
        missing += [t for t in mark.args if shutil.which(t) is None]
        missing += [str(f) for f in mark.kwargs.get("needs_files", ()) if not Path(f).exists()]
    return sorted(set(missing))


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = missing_requirements(item)
    if not missing:
        return
    msg = f"missing {', '.join(missing)}: run scripts/setup.sh (or set {OPT_OUT}=1 to skip such tests)"
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)
