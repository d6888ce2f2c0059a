"""Locating and running the external tools (arm-none-eabi-*, host gcc), with errors that say how to fix."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
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
        raise CompileError(
            f"{what} failed ({Path(cmd[0]).name} exit {proc.returncode}):\n{tail}",
            "Fix the error above (the full command is: " + " ".join(cmd) + ").",
        )
    if warnings is not None and proc.stderr.strip():
        warnings.append(proc.stderr.strip())
    return proc.stdout


def shared_library(
    sources: Sequence[Path],
    out_dir: Path,
    flags: Sequence[str],
    *,
    headers: Sequence[Path] = (),
    stem: str = "host",
    cc: str = "gcc",
    what: str = "the host build",
    strict: tuple[Sequence[Path], Sequence[str]] = ((), ()),
) -> Path:
    """Compile C sources into one host shared library, cached by content.

    The file name carries a hash of the compiler, flags, sources and headers, so a library is rebuilt exactly
    when one of them changed and is shared by every caller that asks for the same build (the compiler's tests,
    the tvm-host oracle, the firmware tests). The build writes a per-process temporary file and renames it, so
    concurrent builders of the same sources never see a half-written library. `strict` is (sources, extra
    flags), e.g. hand-written C held to -Werror beside generated C that is not: checked before a build.
    """
    import hashlib
    import os
    import tempfile

    compiler = tool(cc)
    h = hashlib.sha256("\0".join([cc, *flags, *strict[1]]).encode())
    for f in [*sources, *headers]:
        f = Path(f)
        if not f.is_file():
            raise CompileError(f"C source '{f}' does not exist.", "Recompile the model or fix the path.")
        h.update(f.name.encode())
        h.update(f.read_bytes())
    lib = Path(out_dir) / f"{stem}-{h.hexdigest()[:16]}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    for src in strict[0]:
        run([compiler, *flags, *strict[1], "-fsyntax-only", str(src)], what=f"compiling {Path(src).name}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{lib.name}.", suffix=".tmp", dir=lib.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        run([compiler, "-shared", "-fPIC", *flags, *map(str, sources), "-o", str(tmp), "-lm"], what=what)
        tmp.replace(lib)
    finally:
        tmp.unlink(missing_ok=True)
    return lib
