"""Flashing a board through OpenOCD or pyOCD with the board's configuration from targets/boards/.

`--dry-run` prints the exact command; `--protect` also sets the chip's read-out protection (RDP level 1 on
the STM32s here) so the weights cannot be read back over the debug port. Nothing here can run without a
probe: no board attached is a clear DeviceError, never a hang.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass

from divqat_tvm.device.build import FirmwareBuild
from divqat_tvm.errors import DeviceError

TOOLS = ("openocd", "pyocd")


@dataclass(frozen=True)
class FlashPlan:
    """The command that programs (and optionally locks) the board, and notes for the user."""

    tool: str
    argv: list[str]
    notes: list[str]

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


def _board_tool_config(fw: FirmwareBuild) -> dict:
    if fw.board.is_qemu or not fw.board.flash_tool:
        raise DeviceError(
            f"board '{fw.board.name}' is a QEMU machine; there is nothing to flash.",
            f"Run it with `divqat-tvm emulate BUILD_DIR --board {fw.board.name}`.",
        )
    return fw.board.flash_tool


def choose_tool(fw: FirmwareBuild, tool: str | None, dry_run: bool) -> str:
    """The requested tool, else the first of openocd/pyocd that the board supports and PATH has."""
    cfg = _board_tool_config(fw)
    if tool is not None:
        if tool not in TOOLS:
            raise DeviceError(f"unknown flash tool '{tool}'.", "Use --tool openocd or --tool pyocd.")
        if tool not in cfg:
            raise DeviceError(
                f"targets/boards/{fw.board.name}.json has no {tool} configuration.",
                f"Use --tool {' or '.join(cfg)} or add the configuration to the board file.",
            )
        return tool
    for t in TOOLS:
        if t in cfg and shutil.which(t):
            return t
    if dry_run:
        return next(t for t in TOOLS if t in cfg)
    raise DeviceError(
        f"neither {' nor '.join(t for t in TOOLS if t in cfg)} is installed.",
        "Install one (apt-get install openocd, or pip install pyocd), or use --dry-run to see the command.",
    )


def flash_plan(fw: FirmwareBuild, tool: str | None = None, protect: bool = False, dry_run: bool = False) -> FlashPlan:
    """The exact command for this board and tool."""
    cfg = _board_tool_config(fw)
    tool = choose_tool(fw, tool, dry_run)
    image = str(fw.hex)
    notes: list[str] = []
    if tool == "openocd":
        oc = cfg["openocd"]
        argv = ["openocd"]
        for f in oc["config"]:
            argv += ["-f", f]
        if protect:
            argv += [
                "-c",
                f"program {image} verify",
                "-c",
                "reset halt",
                "-c",
                oc["protect"],
                "-c",
                "reset run",
                "-c",
                "shutdown",
            ]
            notes.append(
                "Read-out protection takes effect after a power cycle; undoing it (RDP level 0) mass-erases the chip."
            )
        else:
            argv += ["-c", f"program {image} verify reset exit"]
    else:
        if protect:
            raise DeviceError(
                "read-out protection is set through OpenOCD in this tool (pyOCD has no portable command for it).",
                "Use --tool openocd --protect.",
            )
        argv = ["pyocd", "flash", "--target", cfg["pyocd"]["target"], "--format", "hex", image]
    return FlashPlan(tool, argv, notes)


def run_flash(plan: FlashPlan, timeout: float = 120.0) -> str:
    """Run the plan; a missing tool, no probe or a failed write becomes a DeviceError with the tool's words."""
    if shutil.which(plan.argv[0]) is None:
        raise DeviceError(
            f"{plan.argv[0]} is not installed.",
            f"Install it, or run with --dry-run and flash by hand: {plan.command_line}",
        )
    try:
        proc = subprocess.run(plan.argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DeviceError(
            f"{plan.tool} did not finish within {timeout:g} s.", "Check the probe's USB connection and power."
        ) from e
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise DeviceError(
            f"{plan.tool} failed (exit {proc.returncode}): {tail}",
            "Is the board attached and powered, with its ST-LINK visible (lsusb)? Check the board file's configuration.",
        )
    return proc.stdout + proc.stderr
