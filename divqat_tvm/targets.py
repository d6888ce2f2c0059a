"""Cores and boards, read from the JSON files in `targets/` (data, not code).

`resolve("cortex-m7")` gives the core and its default QEMU board; `resolve("nucleo-h743zi2")` gives the
board and its core. An unknown name lists the known ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from divqat_tvm.errors import TargetError
from divqat_tvm.resources import data_dir


def targets_dir() -> Path:
    """`$DIVQAT_TARGETS`, else the package's `targets/` (the repository's, or the wheel's copy)."""
    env = os.environ.get("DIVQAT_TARGETS")
    return Path(env) if env else data_dir("targets")


@dataclass(frozen=True)
class Core:
    name: str
    arch: str
    cflags: tuple[str, ...]
    fpu: str | None
    dsp: bool
    mve: bool
    cycle_counter: str | None
    default_board: str | None
    notes: str = ""
    #: a typical part's flash and RAM (bytes) and its name, for a fit warning when no board is named
    typical_flash: int | None = None
    typical_ram: int | None = None
    typical_part: str = ""


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    length: int


@dataclass(frozen=True)
class Board:
    name: str
    kind: str  # "qemu" or "board"
    core: str
    flash: MemoryRegion
    ram: MemoryRegion
    clock_hz: int
    uart: dict[str, Any]
    qemu: dict[str, Any] | None
    flash_tool: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def is_qemu(self) -> bool:
        return self.kind == "qemu"


@dataclass(frozen=True)
class Target:
    """What `--target` names: a core, and the board the firmware is built for (None: library only)."""

    core: Core
    board: Board | None

    @property
    def name(self) -> str:
        return self.board.name if self.board else self.core.name


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (targets_dir() / kind).glob("*.json"))


def _read(kind: str, name: str) -> dict[str, Any]:
    path = targets_dir() / kind / f"{name}.json"
    if not path.is_file():
        raise TargetError(
            f"unknown {kind[:-1]} '{name}'.",
            f"Known cores: {', '.join(_names('cores'))}; known boards: {', '.join(_names('boards'))}.",
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TargetError(f"{path} is not valid JSON ({e}).", "Fix the file or restore it from git.") from e


def _int(v: Any) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


@cache
def load_core(name: str) -> Core:
    d = _read("cores", name)
    try:
        return Core(
            name=d["name"],
            arch=d["arch"],
            cflags=tuple(d["cflags"]),
            fpu=d.get("fpu"),
            dsp=bool(d["dsp"]),
            mve=bool(d["mve"]),
            cycle_counter=d.get("cycle_counter"),
            default_board=d.get("default_board"),
            notes=d.get("notes", ""),
            typical_flash=(d.get("typical_memory") or {}).get("flash"),
            typical_ram=(d.get("typical_memory") or {}).get("ram"),
            typical_part=(d.get("typical_memory") or {}).get("example", ""),
        )
    except KeyError as e:
        raise TargetError(
            f"core file for '{name}' lacks the field {e}.", "See targets/README.md for the fields."
        ) from e


@cache
def load_board(name: str) -> Board:
    d = _read("boards", name)
    try:
        mem = d["memory"]
        return Board(
            name=d["name"],
            kind=d["kind"],
            core=d["core"],
            flash=MemoryRegion(_int(mem["flash"]["origin"]), _int(mem["flash"]["length"])),
            ram=MemoryRegion(_int(mem["ram"]["origin"]), _int(mem["ram"]["length"])),
            clock_hz=int(d["clock_hz"]),
            uart=d["uart"],
            qemu=d.get("qemu"),
            flash_tool=d.get("flash_tool"),
            raw=d,
        )
    except KeyError as e:
        raise TargetError(
            f"board file for '{name}' lacks the field {e}.", "See targets/README.md for the fields."
        ) from e


def core_names() -> list[str]:
    return _names("cores")


def board_names() -> list[str]:
    return _names("boards")


def resolve(name: str) -> Target:
    """A core name (with its default QEMU board) or a board name (with its core)."""
    if name in core_names():
        core = load_core(name)
        return Target(core, load_board(core.default_board) if core.default_board else None)
    if name in board_names():
        board = load_board(name)
        return Target(load_core(board.core), board)
    raise TargetError(
        f"unknown target '{name}'.",
        f"Use a core ({', '.join(core_names())}) or a board ({', '.join(board_names())}).",
    )
