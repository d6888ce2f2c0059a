"""arm-none-eabi-gcc build of the compiled library for a core, a link check, footprint, and the fit check.

The link check links the library with a tiny entry point (no startup files, --gc-sections, a map
file): an undefined symbol fails the link, and the map must not pull in malloc/_sbrk (no heap).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from divqat_tvm.errors import CompileError
from divqat_tvm.fileio import atomic_write_text
from divqat_tvm.targets import Core, Target
from divqat_tvm.toolchain import run, tool

ARM_CC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
COMMON_CFLAGS = ("-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-ffp-contract=off", "-Wall")
STACK_RESERVE = 4096  # bytes of RAM kept for the stack (and the firmware's own state) in the fit check
HEAP_SYMBOLS = ("malloc", "_malloc_r", "_sbrk", "calloc", "realloc", "free")


def entry_c(prefix: str, header: str = "model.h") -> str:
    """A tiny entry point that calls `<prefix>_run` once, so the link pulls in exactly what a firmware would."""
    up = prefix.upper()
    return f"""#include "{header}"
static int8_t dq_check_in[{up}_INPUT_SIZE];
static int8_t dq_check_out[{up}_OUTPUT_SIZE];
volatile int dq_check_rc;
void dq_check_entry(void) {{
  dq_check_rc = {prefix}_run(dq_check_in, dq_check_out);
  for (;;) {{ }}
}}
"""


@dataclass(frozen=True)
class Footprint:
    """Sizes of the linked check image (bytes): flash = text + rodata + data, ram = data + bss."""

    core: str
    flash_bytes: int
    weight_bytes: int
    code_bytes: int
    ram_bytes: int
    arena_bytes: int

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


def _need(weight_bytes: int, arena_bytes: int, code_bytes: int) -> tuple[int, int, str, str]:
    flash = weight_bytes + code_bytes
    ram = arena_bytes + STACK_RESERVE
    return (
        flash,
        ram,
        f"weights {weight_bytes:,} + code {code_bytes:,}",
        f"arena {arena_bytes:,} + stack reserve {STACK_RESERVE:,}",
    )


def check_fits(
    target: Target,
    weight_bytes: int,
    arena_bytes: int,
    code_bytes: int = 0,
    *,
    flash: int | None = None,
    ram: int | None = None,
    named_core: bool = False,
) -> list[str]:
    """Refuse a model that cannot fit; warn where the limit is only typical. Returns the warnings.

    Limits, strongest first: the user's `flash`/`ram` (refuse), the board's memory (refuse), and, when the
    target names a core rather than a board, a typical part of that core (`typical_memory` in its JSON: warn).
    """
    need_flash, need_ram, flash_what, ram_what = _need(weight_bytes, arena_bytes, code_bytes)
    limits = []
    if flash is not None or ram is not None:
        limits.append(("the --flash/--ram you gave", flash, ram, True))
    elif target.board is not None and not named_core:
        limits.append((target.board.name, target.board.flash.length, target.board.ram.length, True))
    if named_core and flash is None and ram is None:
        c = target.core
        limits.append((f"a typical {c.name} part ({c.typical_part})", c.typical_flash, c.typical_ram, False))
    warnings = []
    for where, f_cap, r_cap, hard in limits:
        for kind, need, cap, what in (("flash", need_flash, f_cap, flash_what), ("RAM", need_ram, r_cap, ram_what)):
            if cap is None or need <= cap:
                continue
            msg = f"the model needs {need:,} bytes of {kind} ({what}) but {where} has {cap:,}"
            if hard:
                fix = (
                    "Use a smaller model (fewer channels or a smaller input) or a part with more memory."
                    if kind == "RAM"
                    else "Use a smaller model or a part with more flash."
                )
                raise CompileError(msg + ".", fix)
            warnings.append(msg + "; name your board with --target BOARD or give --flash/--ram to check exactly.")
    return warnings


def build_library(build_dir: str | Path, core: Core, out_subdir: str | None = None) -> Footprint:
    """Compile model.c + kernels.c for `core`, link the check image, and measure it."""
    import json

    build_dir = Path(build_dir)
    cc = tool(ARM_CC)
    size = tool(ARM_SIZE)
    manifest = json.loads((build_dir / "manifest.json").read_text())
    work = build_dir / (out_subdir or f"arm-{core.name}")
    work.mkdir(parents=True, exist_ok=True)
    flags = [*core.cflags, *COMMON_CFLAGS, f"-I{build_dir}"]
    objs = []
    for src in manifest.get("sources", ["model.c", "kernels.c"]):
        obj = work / (Path(src).stem + ".o")
        warnings: list[str] = []
        run(
            [cc, *flags, "-c", str(build_dir / src), "-o", str(obj)],
            what=f"{ARM_CC} ({core.name}) of {src}",
            warnings=warnings,
        )
        if warnings:
            atomic_write_text(work / f"{Path(src).stem}.warnings.txt", "\n".join(warnings) + "\n")
        objs.append(obj)
    entry = work / "entry.c"
    atomic_write_text(entry, entry_c(manifest["prefix"], manifest.get("header", "model.h")))
    elf = work / "check.elf"
    map_file = work / "check.map"
    run(
        [
            cc,
            *flags,
            "-nostartfiles",
            "-Wl,--gc-sections",
            f"-Wl,-Map={map_file}",
            "-Wl,-e,dq_check_entry",
            str(entry),
            *map(str, objs),
            "-lm",
            "-o",
            str(elf),
        ],
        what=f"link check ({core.name})",
    )
    heap = heap_symbols(map_file.read_text())
    if heap:
        raise CompileError(
            f"the {core.name} link pulls in heap functions {heap}.", "The generated C must not allocate; report this."
        )
    sections = section_sizes(run([size, "-A", str(elf)], what=ARM_SIZE))
    flash = sum(v for k, v in sections.items() if k in (".text", ".rodata", ".data", ".ARM.exidx", ".init", ".fini"))
    ram = sum(v for k, v in sections.items() if k in (".data", ".bss"))
    weights = int(manifest["weight_bytes"])
    return Footprint(core.name, flash, weights, max(flash - weights, 0), ram, int(manifest["arena_bytes"]))


def heap_symbols(map_text: str) -> list[str]:
    """Heap functions linked into the image, from a GNU ld map ('.text.malloc' sections or archive members)."""
    found = []
    for sym in HEAP_SYMBOLS:
        if re.search(rf"(\.text\.{sym}\b|\({re.escape(sym)}\.o\)|lib_a-{sym}r?\.o|\s{sym}$)", map_text, re.M):
            found.append(sym)
    return found


def section_sizes(size_output: str) -> dict[str, int]:
    """arm-none-eabi-size -A output → {section: bytes}."""
    out = {}
    for line in size_output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out
