"""firmware/, the compiler's C kernels (divqat_tvm/compiler/csrc/) and the tests' C are formatted with the repository's .clang-format (LLVM-based, 4 spaces, 120 columns).

clang-format is a Debian package (scripts/setup.sh installs it). Missing, the test fails, unless
DIVQAT_ALLOW_MISSING_TOOLS=1 says that is expected on this machine (then it skips)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.needs_tools("clang-format")
def test_firmware_is_clang_formatted():
    exe = shutil.which("clang-format")
    assert exe is not None  # the needs_tools marker failed the test already otherwise
    assert (ROOT / ".clang-format").is_file()
    roots = (ROOT / "firmware", ROOT / "divqat_tvm" / "compiler" / "csrc", ROOT / "tests")
    files = sorted(p for r in roots for p in r.rglob("*") if p.suffix in (".c", ".h") and "fixtures" not in p.parts)
    assert len(files) >= 25
    proc = subprocess.run(
        [exe, "--dry-run", "-Werror", *map(str, files)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (
        "C is not clang-formatted; run `clang-format -i` on the files named:\n" + proc.stderr[-3000:]
    )
