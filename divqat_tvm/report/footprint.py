"""Footprint of a firmware image: flash by section and by part, RAM, and (measured under QEMU) instructions.

JSON is the source of truth (`footprint.json`); Markdown and a PNG are rendered from it. Units are always
in the key names or beside the figures: bytes; `instructions (emulated)` under QEMU -icount; `cycles (board)`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from divqat_tvm.device.toolchain import tool

if TYPE_CHECKING:
    from divqat_tvm.device.build import FirmwareBuild

#: object file stem -> part of the image
PARTS = {
    "model": "model (weights + call sequence)", "kernels": "kernels", "protocol": "protocol",
}
FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".bss", ".stack")


def section_sizes(elf: Path) -> dict[str, int]:
    """`arm-none-eabi-size -A`: bytes per output section (plain `size` folds .stack into bss)."""
    out = subprocess.run([tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True, check=True).stdout
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


def static_footprint(fb: "FirmwareBuild") -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------ measured part

def unit_of(qemu: bool, timer: str) -> str:
    """The unit a device's counter measures: instructions under QEMU -icount, cycles on a board."""
    return "instructions (emulated)" if qemu else "cycles (board)"


def _per_tick(qemu: bool, timer: str, clock_hz: int) -> float:
    """Counter ticks -> the unit: SysTick under QEMU ticks once per 1e9/clock_hz instructions (1 ns each);
    on a board SysTick (core clock source) and DWT both count core cycles."""
    return 1e9 / clock_hz if qemu else 1.0


def measure_link(link: Any, ops: list[dict], inputs: "np.ndarray", profile_link: Any = None) -> dict[str, Any]:
    """Counts per inference (and per operator from a profiling firmware) over open device links."""
    import numpy as np

    info = link.info()
    per_tick = _per_tick(info.qemu, info.timer, info.clock_hz)
    unit = unit_of(info.qemu, info.timer)
    model, post, peak = [], [], 0
    for x in inputs:
        r = link.infer_inline(x)
        model.append(r.model_ticks)
        post.append(r.post_ticks)
        peak = max(peak, r.stack_peak)
    out: dict[str, Any] = {
        "unit": unit, "timer": info.timer, "ticks_to_unit": per_tick, "resolution": per_tick if info.qemu else 1.0,
        "inputs": int(len(inputs)), "board": info.board, "cpuid": f"{info.cpuid:#010x}",
        "model_per_inference": {"mean": float(np.mean(model)) * per_tick, "min": min(model) * per_tick,
                                "max": max(model) * per_tick},
        "postprocess_per_inference": {"mean": float(np.mean(post)) * per_tick, "min": min(post) * per_tick,
                                      "max": max(post) * per_tick},
        "stack_peak_bytes": int(peak),
    }
    out["total_per_inference"] = out["model_per_inference"]["mean"] + out["postprocess_per_inference"]["mean"]
    if profile_link is not None:
        sums = None
        totals = []
        for x in inputs:
            profile_link.infer_inline(x)
            st = profile_link.stats()
            sums = np.array(st.op_ticks, dtype=np.float64) if sums is None else sums + st.op_ticks
            totals.append(st.total_ticks)
        sums = sums / len(inputs) * per_tick
        rows = []
        for i, v in enumerate(sums):
            op = ops[i] if i < len(ops) else {"name": f"op{i}", "kind": "?", "macs": 0}
            macs = int(op.get("macs", 0) or 0)
            rows.append({"index": i, "name": op.get("name"), "kind": op.get("kind"), "macs": macs, "count": float(v),
                         "per_mac": float(v) / macs if macs else None})
        prof_total = float(np.mean(totals)) * per_tick
        out["per_operator"] = rows
        out["profiled_total"] = prof_total
        out["profiling_overhead"] = prof_total - float(sums.sum())
    return out


def measure_qemu(build_dir: Path, board: str, defense: Any = None, n: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run the plain and the profiling firmware under QEMU on n random int8 inputs."""
    import numpy as np

    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.oracle.qemu import QemuRunner

    fb = build_firmware(build_dir, board, defense)
    fbp = build_firmware(build_dir, board, defense, profile=True)
    with QemuRunner(fb, shared_ram=False) as r, QemuRunner(fbp, shared_ram=False) as rp:
        assert r.info is not None
        xs = np.random.default_rng(seed).integers(-128, 128, (n, r.info.input_size)).astype(np.int8)
        return measure_link(r.link, fb.manifest.get("ops", []), xs, rp.link)


def full_footprint(build_dir: str | Path, board: str, defense: Any = None, n: int = 3,
                   port: str | None = None) -> dict[str, Any]:
    """Static footprint plus measured counts: over `port` when given (a board running this firmware), else
    under QEMU for a QEMU board; a real board without a port gets the static figures only."""
    import numpy as np

    from divqat_tvm.device.build import build_firmware

    fb = build_firmware(build_dir, board, defense)
    fp = static_footprint(fb)
    if port is None and fb.board.is_qemu:
        m = measure_qemu(Path(build_dir), board, defense, n)
    elif port is not None:
        from divqat_tvm.oracle.protocol import DeviceLink
        from divqat_tvm.oracle.serial_backend import SerialTransport

        link = DeviceLink(SerialTransport(port))
        try:
            link.drain(0.2, 2.0)
            info = link.info()
            xs = np.random.default_rng(0).integers(-128, 128, (n, info.input_size)).astype(np.int8)
            m = measure_link(link, fb.manifest.get("ops", []), xs, link if info.profile else None)
        finally:
            link.t.close()
    else:
        m = None
    fp["measured"] = m
    if m is None:
        fp["measured_note"] = (f"{board} is a real board and no --port was given: counts need the board "
                               "(flash it, then pass --port).")
    else:
        macs = fp["macs"]
        fp["measured"]["per_mac"] = m["model_per_inference"]["mean"] / macs if macs else None
        ram = dict(fp["ram_by_part_bytes"])
        fp["ram_used_bytes"] = {"arena": fp["arena_bytes"], "stack peak (measured)": m["stack_peak_bytes"],
                                "other data/bss": sum(v for k, v in ram.items() if k not in ("arena", "stack region"))}
    return fp


# ------------------------------------------------------------------------------------------ rendering

def render_markdown(fp: dict[str, Any]) -> str:
    """A Markdown page from footprint JSON; every figure with its unit."""
    lines = [f"# Footprint: {fp['model']} on {fp['board']} ({fp['core']})", "",
             f"Defence: {fp['defense']}. Flash {fp['flash_bytes']:,} of {fp['flash_capacity_bytes']:,} bytes; "
             f"RAM (static) {fp['ram_bytes']:,} of {fp['ram_capacity_bytes']:,} bytes.", "",
             "## Sections (arm-none-eabi-size -A, bytes)", "", "| section | memory | bytes |", "| --- | --- | ---: |"]
    where = {".data": "flash + RAM", ".bss": "RAM", ".stack": "RAM (painted stack region)"}
    lines += [f"| {k} | {where.get(k, 'flash')} | {v:,} |" for k, v in sorted(fp["sections_bytes"].items())]
    lines += ["", "## Flash by part (bytes)", "", "| part | bytes |", "| --- | ---: |"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(fp["flash_by_part_bytes"].items(), key=lambda kv: -kv[1])]
    lines += ["", "## RAM (bytes)", "", "| part | bytes |", "| --- | ---: |"]
    ram = fp.get("ram_used_bytes") or fp["ram_by_part_bytes"]
    lines += [f"| {k} | {v:,} |" for k, v in ram.items()]
    m = fp.get("measured")
    if m:
        u = m["unit"]
        lines += ["", f"## Per inference ({u})", "",
                  f"Measured on {m['inputs']} inputs, resolution {m['resolution']:g} {u.split(' ')[0]}.", "",
                  f"| stage | {u} |", "| --- | ---: |",
                  f"| model | {m['model_per_inference']['mean']:,.0f} |",
                  f"| softmax + defence | {m['postprocess_per_inference']['mean']:,.0f} |",
                  f"| total | {m['total_per_inference']:,.0f} |", "",
                  f"MACs: {fp['macs']:,}; {u.split(' ')[0]} per MAC: "
                  + (f"{m['per_mac']:.2f}" if m.get("per_mac") else "n/a") + ".",
                  f"Peak stack (measured): {m['stack_peak_bytes']:,} bytes."]
        if m.get("per_operator"):
            lines += ["", f"## Per operator ({u}, profiling build)", "",
                      f"| # | operator | kind | MACs | {u} | per MAC |", "| ---: | --- | --- | ---: | ---: | ---: |"]
            for r in m["per_operator"]:
                pm = f"{r['per_mac']:.2f}" if r["per_mac"] else ""
                lines.append(f"| {r['index']} | {r['name']} | {r['kind']} | {r['macs']:,} | {r['count']:,.0f} | {pm} |")
            lines.append(f"\nSum of operators vs profiled total: {sum(r['count'] for r in m['per_operator']):,.0f} vs "
                         f"{m['profiled_total']:,.0f} (hooks and call sequence: {m['profiling_overhead']:,.0f}).")
    else:
        lines += ["", fp.get("measured_note", "Not measured.")]
    return "\n".join(lines) + "\n"


def render_png(fp: dict[str, Any], path: Path) -> None:
    """Bars: flash by part, RAM by part, and per-operator counts when measured (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = fp.get("measured") or {}
    ops = m.get("per_operator") or []
    ncols = 3 if ops else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4))
    flash = sorted(fp["flash_by_part_bytes"].items(), key=lambda kv: -kv[1])
    axes[0].barh([k for k, _ in flash], [v for _, v in flash])
    axes[0].set_xlabel("flash (bytes)")
    ram = fp.get("ram_used_bytes") or fp["ram_by_part_bytes"]
    axes[1].barh(list(ram), list(ram.values()))
    axes[1].set_xlabel("RAM (bytes)")
    if ops:
        axes[2].bar(range(len(ops)), [r["count"] for r in ops])
        axes[2].set_xticks(range(len(ops)), [r["name"] for r in ops], rotation=60, ha="right", fontsize=7)
        axes[2].set_ylabel(f"per operator ({m['unit']})")
    fig.suptitle(f"{fp['model']} on {fp['board']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_footprint(fp: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """footprint.json first (atomic), then footprint.md and footprint.png rendered from it."""
    from divqat_tvm.fileio import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "footprint.json", "md": out_dir / "footprint.md", "png": out_dir / "footprint.png"}
    atomic_write_json(paths["json"], fp)
    atomic_write_text(paths["md"], render_markdown(fp))
    render_png(fp, paths["png"])
    return paths
