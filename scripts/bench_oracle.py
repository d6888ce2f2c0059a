#!/usr/bin/env python3
"""Queries per second through each oracle backend: torch (if a checkpoint is given), tvm-host, LiteRT (if a
.tflite is given), qemu with UART-only transfer, qemu with shared RAM (1 and N emulators). Prints a table
and writes JSON.

    .venv/bin/python scripts/bench_oracle.py BUILD_DIR [BUILD_DIR ...] [--checkpoint CKPT] [--n 200]
        [--board mps2-an500] [--instances 2] [--out bench_oracle.json]
        [--backends torch,tvm-host,litert,qemu-uart,qemu-shared] [--batch 1,50]
        [--host-build auto,native,portable] [--threads 1,2] [--repeat 3] [--reference BUILD_DIR=MODEL.pt|MODEL.tflite ...]

Several build dirs (and batch sizes) run side by side in one run; `--reference DIR=FILE` names each one's
torch checkpoint or TFLite file (--checkpoint: the first build dir's). tvm-host rows print their ratio to the
model's torch or LiteRT row of the same batch. LiteRT runs its default CPU kernels (BUILTIN resolver, one
thread) on the same int8 inputs the device receives, batch = the interpreter's input resized to the batch
(not bit-exact with the reference kernels, so a speed yardstick only).
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

#: passes over the queries each backend makes; the fastest counts (a shared machine's load only slows a pass)
REPEAT = 1


def bench(name: str, oracle, x: np.ndarray, batch: int, answers: list | None = None) -> dict:
    oracle.query(x[:batch])  # warm-up: boots emulators, loads libraries
    dt = float("inf")
    for r in range(REPEAT):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            p = oracle.query(x[i : i + batch])
            if answers is not None and r == 0:
                answers.append(p)
        dt = min(dt, time.perf_counter() - t)
    oracle.close()
    row = {"backend": name, "queries": len(x), "seconds": dt, "queries_per_s": len(x) / dt, "batch": batch}
    row["repeat"] = REPEAT
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


def model_inputs(host, n: int) -> np.ndarray:
    """n float32 queries in the model's input space (seeded): uniform pixels normalised the model's way."""
    norm = (host.manifest.get("meta") or {}).get("normalization")
    rng = np.random.default_rng(0)
    if norm:
        mean, std = (np.asarray(norm[k], dtype=np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
        return ((rng.uniform(0, 1, (n, *host.input_shape)) - mean) / std).astype(np.float32)
    return rng.standard_normal((n, *host.input_shape)).astype(np.float32)


class LiteRTOracle:
    """LiteRT's default CPU kernels (one thread) on the int8 inputs the device would receive."""

    def __init__(self, tflite: Path, manifest: dict, batch: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from divqat_tvm.oracle.backend_tvm_host import quantize_input

        self._q = lambda x: quantize_input(x, manifest)
        self.it = Interpreter(model_path=str(tflite), num_threads=1)
        d = self.it.get_input_details()[0]
        self.shape = list(d["shape"][1:])
        if batch > 1:
            self.it.resize_tensor_input(d["index"], [batch, *self.shape])
        self.it.allocate_tensors()
        self.i, self.o = d["index"], self.it.get_output_details()[0]["index"]

    def query(self, x: np.ndarray) -> np.ndarray:
        q = self._q(x).reshape(len(x), *self.shape)
        self.it.set_tensor(self.i, q)
        self.it.invoke()
        return self.it.get_tensor(self.o)

    def close(self) -> None:
        pass


def bench_model(a: argparse.Namespace, build_dir: Path, reference: Path | None) -> list[dict]:
    """Every asked backend on one build dir, at every batch size."""
    from divqat_tvm.oracle.backend_device import QemuOracle
    from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle

    probe = TvmHostOracle(build_dir, host_build="portable")
    x = model_inputs(probe, a.n)
    rows = []
    print(f"== {build_dir} (reference: {reference or 'none'})", flush=True)
    for batch in a.batch:
        ref_row = None
        for backend in a.backends:
            if backend == "torch" or backend == "litert":
                want = ".pt" if backend == "torch" else ".tflite"
                if reference is None or reference.suffix != want:
                    continue
                if backend == "torch":
                    import torch

                    from divqat_tvm.oracle.backend_torch import TorchOracle

                    torch.set_num_threads(1)
                    oracle = TorchOracle.from_checkpoint(reference)
                    name = "torch (1 thread)"
                else:
                    oracle = LiteRTOracle(reference, probe.manifest, batch)
                    name = "LiteRT default kernels (1 thread)"
                ref_row = bench(name, oracle, x, batch)
                rows.append(ref_row)
            elif backend == "tvm-host":
                for host_build in a.host_build:
                    for threads in a.threads:
                        host = TvmHostOracle(build_dir, host_build=host_build, threads=threads)
                        row = bench(f"tvm-host {host.build_info}", host, x, batch)
                        row.update(host_build=host.build_info, threads=threads)
                        if ref_row is not None:
                            row["ratio_to"] = ref_row["backend"]
                            row["ratio"] = row["queries_per_s"] / ref_row["queries_per_s"]
                            print(f"{'':28s} x{row['ratio']:.2f} of {ref_row['backend']}", flush=True)
                        rows.append(row)
            elif backend == "qemu-uart":
                rows.append(bench(f"qemu {a.board} UART x1", QemuOracle(build_dir, a.board, transfer="uart"), x, batch))
            elif backend == "qemu-shared":
                for n in sorted({1, a.instances}):
                    oracle = QemuOracle(build_dir, a.board, transfer="shared", instances=n)
                    rows.append(bench(f"qemu {a.board} shared RAM x{n}", oracle, x, batch))
    for r in rows:
        r["build_dir"] = str(build_dir)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dirs", type=Path, nargs="+")
    ap.add_argument("--checkpoint", type=Path, default=None, help="torch checkpoint of the first build dir's model")
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        help="BUILD_DIR=MODEL.pt (torch) or BUILD_DIR=MODEL.tflite (LiteRT default kernels); repeatable",
    )
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[50])
    ap.add_argument("--board", default="mps2-an500")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument(
        "--backends",
        type=lambda s: s.split(","),
        default=["torch", "tvm-host", "litert", "qemu-uart", "qemu-shared"],
        help="comma-separated subset of torch,tvm-host,litert,qemu-uart,qemu-shared",
    )
    ap.add_argument(
        "--host-build",
        type=lambda s: s.split(","),
        default=["auto"],
        help="tvm-host builds to measure, comma-separated: auto, native, portable",
    )
    ap.add_argument(
        "--threads", type=lambda s: [int(v) for v in s.split(",")], default=[1], help="tvm-host threads, e.g. 1,2"
    )
    ap.add_argument(
        "--devices",
        type=lambda s: [int(v) for v in s.split(",")],
        default=None,
        help="comma-separated emulator counts, e.g. 1,2,4: measure only the device pool",
    )
    ap.add_argument("--executor", choices=("local", "ray"), default="local", help="where --devices run")
    ap.add_argument("--repeat", type=int, default=1, help="passes per backend; the fastest is reported")
    ap.add_argument("--out", type=Path, default=Path("bench_oracle.json"))
    a = ap.parse_args()
    global REPEAT
    REPEAT = max(1, a.repeat)
    if a.devices is not None and (not a.devices or min(a.devices) < 1):
        ap.error("--devices takes positive counts, e.g. 1,2,4")
    refs: dict[Path, Path] = {}
    if a.checkpoint is not None:
        refs[a.build_dirs[0].resolve()] = a.checkpoint
    for r in a.reference:
        d, eq, f = r.partition("=")
        if not eq or not f:
            ap.error(f"--reference takes BUILD_DIR=FILE, not {r!r}")
        refs[Path(d).resolve()] = Path(f)

    from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle

    load_before = os.getloadavg()
    meta = {
        "build_dirs": [str(b) for b in a.build_dirs],
        "board": a.board,
        "batches": a.batch,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
    }
    if a.devices is not None:
        host = TvmHostOracle(a.build_dirs[0], host_build="portable")
        x = model_inputs(host, a.n)
        a.batch = a.batch[0]
        a.build_dir = a.build_dirs[0]
        rows = bench_devices(a, x)
        meta.update(input_shape=list(host.input_shape), executor=a.executor)
    else:
        rows = [r for b in a.build_dirs for r in bench_model(a, b, refs.get(b.resolve()))]
    meta["load_average"] = os.getloadavg()
    atomic_write_json(a.out, {"meta": meta, "rows": rows})
    print(f"wrote {a.out} (load average before {load_before[0]:.2f}, after {meta['load_average'][0]:.2f})")


if __name__ == "__main__":
    main()
