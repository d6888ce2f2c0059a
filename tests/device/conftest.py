"""Shared fixtures for the device tests: a compiled-model directory (the hand-written tiny_dense fixture,
which follows docs/contracts.md exactly) copied into a session temp dir, and its numpy reference."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
QEMU_BOARDS = ["mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"]
REAL_BOARDS = ["nucleo-h743zi2", "nucleo-l4r5zi", "stm32f746g-disco"]


def have_toolchain() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None


needs_emulator = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the fixture build directory (firmware builds land inside it)."""
    dst = tmp_path_factory.mktemp("builds") / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


def _array(src: str, name: str) -> np.ndarray:
    m = re.search(rf"{name}\[\d+\] = \{{([^}}]*)\}}", src)
    assert m, name
    return np.array([int(v) for v in m.group(1).split(",")], dtype=np.int64)


def _requant(acc: np.ndarray, mult: int, shift: int, zp: int, lo: int) -> np.ndarray:
    r = (acc * mult + (1 << (shift - 1))) >> shift
    return np.clip(r + zp, lo, 127)


def tiny_reference(x: np.ndarray) -> np.ndarray:
    """The fixture's int8 network in numpy (int64 arithmetic): an independent check of the C kernels."""
    src = (FIXTURE / "model.c").read_text()
    w1, b1 = _array(src, "w1").reshape(8, 16), _array(src, "b1")
    w2, b2 = _array(src, "w2").reshape(4, 8), _array(src, "b2")
    calls = [[a.strip() for a in c.split(",")] for c in re.findall(r"fixture_dense\(([^;]*)\);", src)]
    p1 = next(c for c in calls if c[1] == "w1")
    p2 = next(c for c in calls if c[1] == "w2")
    x = np.asarray(x, dtype=np.int64).reshape(len(x), 16)
    h = _requant(x @ w1.T + b1, int(p1[7]), int(p1[8]), -128, -128)
    return _requant((h + 128) @ w2.T + b2, int(p2[7]), int(p2[8]), 3, -128).astype(np.int8)
