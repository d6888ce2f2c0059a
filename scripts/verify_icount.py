#!/usr/bin/env python3
"""Check what a SysTick tick is worth under `-icount shift=0` on each QEMU board: count the instructions of
one inference exactly (QEMU's per-instruction execution log) and compare with the ticks the firmware
measured times 1e9/clock_hz. Prints one line per board and writes JSON. For small models only.

    .venv/bin/python scripts/verify_icount.py BUILD_DIR [--boards mps2-an500 ...] [--out icount.json]
"""

from __future__ import annotations

import argparse

from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.icount import compare_counts
from divqat_tvm.fileio import atomic_write_json

BOARDS = ["mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir")
    ap.add_argument("--boards", nargs="+", default=BOARDS)
    ap.add_argument("--out", default="icount.json")
    a = ap.parse_args()
    rows = []
    for b in a.boards:
        row = compare_counts(build_firmware(a.build_dir, b))
        rows.append(row)
        print(
            f"{b:12s} clock {row['clock_hz'] / 1e6:g} MHz: exact {row['exact_instructions']} instructions, "
            f"{row['ticks']} ticks x {row['instructions_per_tick']:g} = {row['estimated_instructions']:.0f} "
            f"(difference {row['difference']:+.0f}; includes the timer reads)"
        )
    atomic_write_json(a.out, {"rows": rows})


if __name__ == "__main__":
    main()
