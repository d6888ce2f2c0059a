#!/usr/bin/env python3
"""Queries per second through each oracle backend: torch (if a checkpoint is given), tvm-host, qemu with
UART-only transfer, qemu with shared RAM (1 and N emulators). Prints a table and writes JSON.

    .venv/bin/python scripts/bench_oracle.py BUILD_DIR [--checkpoint CKPT] [--n 200] [--board mps2-an500]
        [--instances 2] [--out bench_oracle.json]
    .venv/bin/python scripts/bench_oracle.py BUILD_DIR --devices 1,2,4 [--executor local|ray]

With --devices, only the device pool is measured: the qemu backend (shared RAM) with each number of
emulators behind one oracle, its speed-up over one, and whether its answers are byte-identical to one's.
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


def bench(name: str, oracle, x: np.ndarray, batch: int, answers: list | None = None) -> dict:
    oracle.query(x[:batch])  # warm-up: boots emulators, loads libraries
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        p = oracle.query(x[i : i + batch])
        if answers is not None:
            answers.append(p)
    dt = time.perf_counter() - t
    oracle.close()
    row = {"backend": name, "queries": len(x), "seconds": dt, "queries_per_s": len(x) / dt, "batch": batch}
    print(
        f"{name:28s} {row['queries_per_s']:10.1f} queries/s  ({len(x)} queries in {dt:.2f} s, batch {batch})",
        flush=True,
    )
    return row


def bench_devices(a: argparse.Namespace, x: np.ndarray) -> list[dict]:
    """The device pool: 1, 2, 4 ... emulators behind one oracle; speed-up over the first, identical answers."""
    from divqat_tvm.oracle.backend_device import QemuOracle

    rows, first = [], None
    for n in a.devices:
        answers: list = []
        oracle = QemuOracle(a.build_dir, a.board, transfer="shared", instances=n, executor=a.executor)
        row = bench(f"qemu {a.board} --devices {n} ({a.executor})", oracle, x, a.batch, answers)
        blob = np.concatenate(answers).tobytes()
        if first is None:
            first = (row, blob)
        row.update(
            devices=n,
            executor=a.executor,
            speedup=row["queries_per_s"] / first[0]["queries_per_s"],
            identical_to_first=blob == first[1],
        )
        print(
            f"{'':28s} speed-up x{row['speedup']:.2f} over --devices {first[0]['devices']}; answers identical: {row['identical_to_first']}",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="torch checkpoint of the same model (torch backend)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--board", default="mps2-an500")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument(
        "--devices",
        type=lambda s: [int(v) for v in s.split(",")],
        default=None,
        help="comma-separated emulator counts, e.g. 1,2,4: measure only the device pool",
    )
    ap.add_argument("--executor", choices=("local", "ray"), default="local", help="where --devices run")
    ap.add_argument("--out", type=Path, default=Path("bench_oracle.json"))
    a = ap.parse_args()
    if a.devices is not None and (not a.devices or min(a.devices) < 1):
        ap.error("--devices takes positive counts, e.g. 1,2,4")

    from divqat_tvm.oracle.backend_device import QemuOracle
    from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle

    host = TvmHostOracle(a.build_dir)
    norm = (host.manifest.get("meta") or {}).get("normalization")
    rng = np.random.default_rng(0)
    if norm:  # images of the model's input space: uniform pixels in [0, 1], normalised the model's way
        mean, std = (np.asarray(norm[k], dtype=np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
        x = ((rng.uniform(0, 1, (a.n, *host.input_shape)) - mean) / std).astype(np.float32)
    else:
        x = rng.standard_normal((a.n, *host.input_shape)).astype(np.float32)
    load_before = os.getloadavg()
    if a.devices is not None:
        rows = bench_devices(a, x)
        meta = {
            "build_dir": str(a.build_dir),
            "board": a.board,
            "input_shape": list(host.input_shape),
            "executor": a.executor,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average": os.getloadavg(),
        }
        atomic_write_json(a.out, {"meta": meta, "rows": rows})
        print(f"wrote {a.out} (load average before {load_before[0]:.2f}, after {meta['load_average'][0]:.2f})")
        return
    rows = []
    if a.checkpoint is not None:
        import torch

        from divqat_tvm.oracle.backend_torch import TorchOracle

        torch.set_num_threads(1)
        rows.append(bench("torch (1 thread)", TorchOracle.from_checkpoint(a.checkpoint), x, a.batch))
    else:
        print("torch: skipped (no --checkpoint)")
    rows.append(bench("tvm-host", host, x, a.batch))
    rows.append(
        bench(f"qemu {a.board} UART x1", QemuOracle(a.build_dir, a.board, transfer="uart", instances=1), x, a.batch)
    )
    rows.append(
        bench(
            f"qemu {a.board} shared RAM x1",
            QemuOracle(a.build_dir, a.board, transfer="shared", instances=1),
            x,
            a.batch,
        )
    )
    if a.instances > 1:
        rows.append(
            bench(
                f"qemu {a.board} shared RAM x{a.instances}",
                QemuOracle(a.build_dir, a.board, transfer="shared", instances=a.instances),
                x,
                a.batch,
            )
        )
    meta = {
        "build_dir": str(a.build_dir),
        "board": a.board,
        "input_shape": list(host.input_shape),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    atomic_write_json(a.out, {"meta": meta, "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
