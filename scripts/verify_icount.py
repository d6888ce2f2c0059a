#!/usr/bin/env python3
"""Check what a SysTick tick is worth under `-icount shift=0`: count the instructions of one inference
exactly (QEMU -singlestep -d exec,nochain logs every executed instruction) and compare with the ticks the
firmware measured times 1e9/clock_hz. Prints one line per board and writes JSON.

    .venv/bin/python scripts/verify_icount.py BUILD_DIR [--boards mps2-an500 ...] [--out icount.json]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.toolchain import tool
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.oracle.qemu import QemuRunner, ns_per_tick


def symbol(elf: Path, name: str) -> int:
    out = subprocess.run([tool("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"{name} not in {elf}")


def count(build_dir: str, board: str) -> dict:
    fb = build_firmware(build_dir, board)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "exec.log"
        r = QemuRunner(fb, shared_ram=False, extra_args=["-singlestep", "-d", "exec,nochain", "-D", str(log)])
        info = r.start()
        res = r.infer(np.arange(info.input_size, dtype=np.int64).astype(np.int8))
        r.stop()
        start = symbol(fb.elf, fb.manifest["prefix"] + "_run")
        end = symbol(fb.elf, "dq_postprocess")
        pcs = [int(m.group(1), 16) for m in re.finditer(r"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/", log.read_text())]
    i0 = pcs.index(start)
    i1 = pcs.index(end, i0)
    exact = i1 - i0
    per_tick = ns_per_tick(fb.board.clock_hz)
    return {"board": board, "clock_hz": fb.board.clock_hz, "exact_instructions": exact, "ticks": res.model_ticks,
            "instructions_per_tick": per_tick, "estimated_instructions": res.model_ticks * per_tick,
            "difference": res.model_ticks * per_tick - exact}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir")
    ap.add_argument("--boards", nargs="+", default=["mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"])
    ap.add_argument("--out", default="icount.json")
    a = ap.parse_args()
    rows = []
    for b in a.boards:
        row = count(a.build_dir, b)
        rows.append(row)
        print(f"{b:12s} clock {row['clock_hz'] / 1e6:g} MHz: exact {row['exact_instructions']} instructions, "
              f"{row['ticks']} ticks x {row['instructions_per_tick']:g} = {row['estimated_instructions']:.0f} "
              f"(difference {row['difference']:+.0f}, includes the timer read)")
    atomic_write_json(a.out, {"rows": rows})


if __name__ == "__main__":
    main()
