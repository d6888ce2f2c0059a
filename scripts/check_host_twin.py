#!/usr/bin/env python3
"""Bit-exactness of the tvm-host builds: native (AVX-512 VNNI where present), native AVX2, portable C and the
firmware under QEMU answer the same int8 logits and the same float32 probability bits on the same inputs.

    .venv/bin/python scripts/check_host_twin.py BUILD_DIR [BUILD_DIR ...] [--n 10000] [--qemu-n 10000]
        [--board mps2-an500] [--instances 2] [--out check_host_twin.json]

Inputs are seeded uniform int8 vectors (every byte value), the device's own input format. Prints one line per
build and comparison, writes JSON, and exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from divqat_tvm.device.host_twin import HostTwin, host_cpu
from divqat_tvm.fileio import atomic_write_json


def answers(twin: HostTwin, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    t = time.perf_counter()
    logits, probs = twin.infer(x)
    return logits, probs, time.perf_counter() - t


def check(build_dir: Path, a: argparse.Namespace) -> list[dict]:
    """Every host build and QEMU against the portable build on one compiled model."""
    portable = HostTwin(build_dir, host_build="portable")
    x = np.random.default_rng(a.seed).integers(-128, 128, (a.n, portable.input_size), dtype=np.int8)
    ref_l, ref_p, dt = answers(portable, x)
    rows = [{"build_dir": str(build_dir), "build": portable.describe(), "inputs": a.n, "seconds": dt}]
    print(f"{build_dir}: portable C, {a.n} inputs in {dt:.1f} s", flush=True)
    others = [HostTwin(build_dir, host_build="native")]
    if "avx2" in host_cpu()["flags"]:  # type: ignore[operator]
        others.append(HostTwin(build_dir, host_build="native", march="haswell"))  # the AVX2 path
    for twin in others:
        logits, probs, dt = answers(twin, x)
        bad = int(
            np.sum(np.any(logits != ref_l, axis=1) | np.any(probs.view(np.uint32) != ref_p.view(np.uint32), axis=1))
        )
        rows.append(
            {"build_dir": str(build_dir), "build": twin.describe(), "inputs": a.n, "seconds": dt, "mismatches": bad}
        )
        print(f"  {twin.describe():40s} {a.n} inputs in {dt:.2f} s, {bad} mismatching the portable build", flush=True)
    if a.qemu_n > 0:
        from divqat_tvm.oracle.backend_device import QemuOracle

        n = min(a.qemu_n, a.n)
        t = time.perf_counter()
        with QemuOracle(build_dir, a.board, instances=a.instances) as dev:
            res = []
            for i in range(0, n, 500):
                res += dev.run_int8(x[i : min(i + 500, n)])
        dt = time.perf_counter() - t
        logits = np.stack([r.logits for r in res]).reshape(n, -1)
        probs = np.stack([r.probs for r in res]).astype(np.float32)
        bad = int(
            np.sum(
                np.any(logits != ref_l[:n], axis=1) | np.any(probs.view(np.uint32) != ref_p[:n].view(np.uint32), axis=1)
            )
        )
        rows.append(
            {"build_dir": str(build_dir), "build": f"qemu {a.board}", "inputs": n, "seconds": dt, "mismatches": bad}
        )
        print(f"  {'qemu ' + a.board:40s} {n} inputs in {dt:.1f} s, {bad} mismatching the portable build", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dirs", type=Path, nargs="+")
    ap.add_argument("--n", type=int, default=10_000, help="inputs per model on the host builds")
    ap.add_argument("--qemu-n", type=int, default=10_000, help="of those, how many also go through QEMU (0: none)")
    ap.add_argument("--board", default="mps2-an500")
    ap.add_argument("--instances", type=int, default=2, help="emulators in parallel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("check_host_twin.json"))
    a = ap.parse_args()
    meta = {"host": platform.node(), "cpu": host_cpu()["machine"], "cpus": os.cpu_count(), "seed": a.seed}
    rows: list[dict] = []
    for b in a.build_dirs:  # the JSON is rewritten after each model, so a long run's finished part is kept
        rows += check(b, a)
        atomic_write_json(a.out, {"meta": meta, "rows": rows})
    bad = sum(r.get("mismatches", 0) for r in rows)
    print(f"wrote {a.out}: {bad} mismatching inputs in total")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
