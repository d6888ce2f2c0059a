#!/usr/bin/env python3
"""Queries per second through each oracle backend: torch (if a checkpoint is given), tvm-host, qemu with
UART-only transfer, qemu with shared RAM (1 and N emulators). Prints a table and writes JSON.

    .venv/bin/python scripts/bench_oracle.py BUILD_DIR [--checkpoint CKPT] [--n 200] [--board mps2-an500]
        [--instances 2] [--out bench_oracle.json]

Start-up (building firmware, booting QEMU) is excluded: each backend answers one warm-up batch first.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from divqat_tvm.fileio import atomic_write_json


def bench(name: str, oracle, x: np.ndarray, batch: int) -> dict:
    oracle.query(x[:batch])  # warm-up: boots emulators, loads libraries
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        oracle.query(x[i:i + batch])
    dt = time.perf_counter() - t
    oracle.close()
    row = {"backend": name, "queries": len(x), "seconds": dt, "queries_per_s": len(x) / dt, "batch": batch}
    print(f"{name:28s} {row['queries_per_s']:10.1f} queries/s  ({len(x)} queries in {dt:.2f} s, batch {batch})", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="torch checkpoint of the same model (torch backend)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--board", default="mps2-an500")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench_oracle.json"))
    a = ap.parse_args()

    from divqat_tvm.oracle.backend_device import QemuOracle
    from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle

    host = TvmHostOracle(a.build_dir)
    x = np.random.default_rng(0).standard_normal((a.n, *host.input_shape)).astype(np.float32)
    rows = []
    if a.checkpoint is not None:
        import torch

        from divqat_tvm.oracle.backend_torch import TorchOracle

        torch.set_num_threads(1)
        rows.append(bench("torch (1 thread)", TorchOracle.from_checkpoint(a.checkpoint), x, a.batch))
    else:
        print("torch: skipped (no --checkpoint)")
    rows.append(bench("tvm-host", host, x, a.batch))
    rows.append(bench(f"qemu {a.board} UART x1", QemuOracle(a.build_dir, a.board, transfer="uart", instances=1), x, a.batch))
    rows.append(bench(f"qemu {a.board} shared RAM x1", QemuOracle(a.build_dir, a.board, transfer="shared", instances=1), x, a.batch))
    if a.instances > 1:
        rows.append(bench(f"qemu {a.board} shared RAM x{a.instances}",
                          QemuOracle(a.build_dir, a.board, transfer="shared", instances=a.instances), x, a.batch))
    meta = {"build_dir": str(a.build_dir), "board": a.board, "input_shape": list(host.input_shape),
            "host": platform.node(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    atomic_write_json(a.out, {"meta": meta, "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
