"""Locating and running the external tools (arm-none-eabi-*, host gcc), with errors that say how to fix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from divqat_tvm.errors import CompileError

_INSTALL = "Install it: apt-get install --no-install-recommends -y gcc-arm-none-eabi libnewlib-arm-none-eabi (or run scripts/setup.sh)."


def tool(name: str) -> str:
    """Absolute path of an executable on PATH, or a CompileError naming the package."""
    path = shutil.which(name)
    if path is None:
        fix = _INSTALL if name.startswith("arm-none-eabi") else f"Install {name} and put it on PATH."
        raise CompileError(f"'{name}' was not found on PATH.", fix)
    return path


def run(cmd: list[str], cwd: Path | None = None, what: str = "a build step", warnings: list[str] | None = None) -> str:
    """Run a tool; a non-zero exit becomes a CompileError quoting the tool's own message.

    Warnings (stderr of a successful run) are appended to `warnings` when given.
    """
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        tail = "\n".join(msg[-25:])
        raise CompileError(f"{what} failed ({Path(cmd[0]).name} exit {proc.returncode}):\n{tail}",
                           "Fix the error above (the full command is: " + " ".join(cmd) + ").")
    if warnings is not None and proc.stderr.strip():
        warnings.append(proc.stderr.strip())
    return proc.stdout
