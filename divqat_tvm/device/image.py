"""What a firmware image tells without running it: bytes per section, flash and RAM by part (from the map).

The build writes this as `footprint.json`; `device.footprint` adds the measured counts to it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from divqat_tvm.toolchain import tool

if TYPE_CHECKING:
    from divqat_tvm.device.build import FirmwareBuild

#: object file stem -> part of the image
PARTS = {
    "model": "model (weights + call sequence)",
    "kernels": "kernels",
    "protocol": "protocol",
}
FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".bss", ".stack")


def section_sizes(elf: Path) -> dict[str, int]:
    """`arm-none-eabi-size -A`: bytes per output section (plain `size` folds .stack into bss)."""
    out = subprocess.run(
        [tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    sizes = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)", line)
        if m and int(m.group(2)) > 0 and not m.group(1).startswith((".debug", ".comment", ".ARM.attributes")):
            sizes[m.group(1)] = int(m.group(2))
    return sizes


_MAP_ONE = re.compile(r"^ (\.[^\s]+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
_MAP_NAME = re.compile(r"^ (\.[^\s]+)\s*$")
_MAP_REST = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


def map_input_sections(map_file: Path) -> list[tuple[str, int, str]]:
    """(input section, bytes, object) for every input section the linker kept, from the map file."""
    text = map_file.read_text(errors="replace")
    start = text.find("Linker script and memory map")
    lines = text[start:].splitlines() if start >= 0 else []
    out: list[tuple[str, int, str]] = []
    pending: str | None = None
    for line in lines:
        m = _MAP_ONE.match(line)
        if m:
            out.append((m.group(1), int(m.group(3), 16), m.group(4).strip()))
            pending = None
            continue
        m = _MAP_NAME.match(line)
        if m:
            pending = m.group(1)
            continue
        if pending:
            m = _MAP_REST.match(line)
            if m:
                out.append((pending, int(m.group(2), 16), m.group(3).strip()))
            pending = None
    return [(s, n, o) for s, n, o in out if n > 0 and not s.startswith((".debug", ".comment", ".ARM.attributes"))]


def _part_of(obj: str) -> str:
    """Which part an object belongs to: model, kernels, protocol, runtime, or the C library."""
    if "(" in obj or obj.endswith(".a") or "/lib" in obj:
        return "libc/libgcc"
    stem = Path(obj).stem
    if stem.startswith("model_"):  # further C files of the compiled model (see device.build.sources)
        stem = "model"
    return PARTS.get(stem, "runtime")


def parts(map_file: Path) -> dict[str, dict[str, int]]:
    """Bytes per part and memory kind: {'flash': {part: bytes}, 'ram': {part: bytes}}.

    Model weights are the model object's read-only data; the arena is its .bss.
    """
    flash: dict[str, int] = {}
    ram: dict[str, int] = {}
    for sec, size, obj in map_input_sections(map_file):
        part = _part_of(obj)
        if part.startswith("model"):
            if sec.startswith(".rodata"):
                part = "weights"
            elif sec.startswith(".bss"):
                part = "arena"
            else:
                part = "model call sequence"
        if sec.startswith((".text", ".rodata", ".vectors", ".ARM.exidx", ".glue", ".init", ".fini")):
            flash[part] = flash.get(part, 0) + size
        elif sec.startswith(".data"):
            flash[part] = flash.get(part, 0) + size
            ram[part] = ram.get(part, 0) + size
        elif sec.startswith((".bss", "COMMON")):
            ram[part] = ram.get(part, 0) + size
    return {"flash": flash, "ram": ram}


def static_footprint(fb: FirmwareBuild) -> dict[str, Any]:
    """What the image alone tells: sections, parts, RAM; the measured part is added by `measure`."""
    secs = section_sizes(fb.elf)
    p = parts(fb.map)
    flash_bytes = sum(v for k, v in secs.items() if k in FLASH_SECTIONS)
    stack = secs.get(".stack", 0)
    ram_bytes = sum(v for k, v in secs.items() if k in RAM_SECTIONS)
    manifest = fb.manifest
    return {
        "format_version": 1,
        "board": fb.board.name,
        "core": fb.core.name,
        "defense": fb.defense.spec(),
        "profile": fb.profile,
        "model": manifest.get("name"),
        "sections_bytes": secs,
        "flash_bytes": flash_bytes,
        "flash_capacity_bytes": fb.board.flash.length,
        "flash_by_part_bytes": p["flash"],
        "ram_bytes": ram_bytes,
        "ram_capacity_bytes": fb.board.ram.length,
        "ram_by_part_bytes": {**p["ram"], "stack region": stack},
        "arena_bytes": int(manifest.get("arena_bytes", p["ram"].get("arena", 0))),
        "weight_bytes": int(manifest.get("weight_bytes", p["flash"].get("weights", 0))),
        "macs": int(manifest.get("macs", 0)),
    }
