#!/usr/bin/env python
"""Benchmark the compiler on ResNet-8 (MLPerf Tiny shape, 3x32x32, 10 classes).

Measures, in one run on this machine: compile time (ONNX → C, then the arm-none-eabi build), flash
(weights + code) and arena bytes for the target core, and inferences per second of the host build (one
thread, batch loop in Python over the C run function) beside onnxruntime (ORT_ENABLE_ALL, 1 thread) and
the torch fake-quant student (1 thread) on the same inputs. Prints a table and writes JSON.

    python scripts/bench_compile.py [--target cortex-m7] [--requant fixed] [--n 500] [--json bench_compile.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _rate(fn, n: int, repeat: int = 3) -> float:
    """Best-of-`repeat` inferences per second of fn() which runs n inferences."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cortex-m7")
    ap.add_argument("--requant", default="fixed", choices=["fixed", "float"])
    ap.add_argument("--n", type=int, default=500, help="inferences per timing")
    ap.add_argument("--out", type=Path, help="build folder (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=Path("bench_compile.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    torch.set_num_threads(1)
    from divqat_tvm.compiler import library, ort_reference
    from divqat_tvm.compiler.api import compile_model
    from divqat_tvm.compiler.host_model import HostModel
    from divqat_tvm.fileio import atomic_write_json
    from divqat_tvm.models import build_model
    from divqat_tvm.quant.config import QuantConfig
    from divqat_tvm.quant.export import export_onnx
    from divqat_tvm.quant.prepare import quantize_model
    from divqat_tvm.targets import resolve

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_compile_")) / "resnet8"
    with Progress(transient=True) as progress:
        task = progress.add_task("PTQ ResNet-8 and export", total=5)
        torch.manual_seed(0)
        model = build_model("resnet8", 3, 10, 32)
        xs = torch.randn(512, 3, 32, 32)
        model.train()
        with torch.no_grad():
            for i in range(0, 256, 64):
                model(xs[i : i + 64])
        model.eval()
        student = quantize_model(model, QuantConfig(method="ptq"), [xs[i : i + 64] for i in range(0, 512, 64)]).eval()
        onnx_path = export_onnx(student, out.parent / "resnet8.onnx", (3, 32, 32), meta={"arch": "resnet8"})
        progress.update(task, advance=1, description="compile (TVM → C)")
        from divqat_tvm.compiler.generate import compile_onnx

        t0 = time.perf_counter()
        compile_onnx(onnx_path, out / "gen_only", requant=args.requant)
        generate_s = time.perf_counter() - t0
        progress.update(task, advance=1, description="compile + arm build")
        t0 = time.perf_counter()
        cm = compile_model(onnx_path, args.target, out, requant=args.requant)
        manifest, fp = cm.manifest, cm.footprint
        total_s = time.perf_counter() - t0
        progress.update(task, advance=1, description="host build")
        host = HostModel(out)
        x = np.random.default_rng(0).standard_normal((args.n, 3, 32, 32)).astype(np.float32)
        xq = host.quantize_input(x)
        sess = ort_reference.session(onnx_path)
        progress.update(task, advance=1, description="timing")
        host_ips = _rate(lambda: host.run(xq), args.n)
        ort_ips = _rate(lambda: [sess.run(None, {"input": x[i : i + 1]}) for i in range(args.n)], args.n)
        ort_batch_ips = _rate(lambda: sess.run(None, {"input": x}), args.n)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            torch_ips = _rate(lambda: [student(xt[i : i + 1]) for i in range(args.n)], args.n)
            torch_batch_ips = _rate(lambda: student(xt), args.n)
        progress.update(task, advance=1)

    result = {
        "model": "resnet8",
        "input_shape": [3, 32, 32],
        "target": args.target,
        "core": resolve(args.target).core.name,
        "requant": args.requant,
        "tvm_version": manifest["tvm_version"],
        "macs": manifest["macs"],
        "compile_seconds_tvm_to_c": round(generate_s, 3),
        "compile_seconds_total_with_arm_build": round(total_s, 3),
        "flash_bytes": fp.flash_bytes,
        "weight_bytes": fp.weight_bytes,
        "code_bytes": fp.code_bytes,
        "arena_bytes": manifest["arena_bytes"],
        "ram_bytes": fp.ram_bytes,
        "stack_reserve_bytes": library.STACK_RESERVE,
        "inferences_per_second": {
            "tvm_host_c_batch1": round(host_ips, 1),
            "onnxruntime_batch1": round(ort_ips, 1),
            f"onnxruntime_batch{args.n}": round(ort_batch_ips, 1),
            "torch_fakequant_batch1": round(torch_ips, 1),
            f"torch_fakequant_batch{args.n}": round(torch_batch_ips, 1),
        },
        "threads": 1,
        "n_inferences": args.n,
        "onnxruntime_options": ort_reference.ORT_OPTIONS,
        "host_cflags": " ".join(__import__("divqat_tvm.compiler.host_model", fromlist=["HOST_CFLAGS"]).HOST_CFLAGS),
    }
    table = Table("figure", "value", title=f"ResNet-8 → {args.target} ({result['core']}), requant {args.requant}")
    table.add_row("compile, TVM → C", f"{generate_s:.2f} s")
    table.add_row("compile + arm-none-eabi build", f"{total_s:.2f} s")
    table.add_row("flash: weights + code", f"{fp.weight_bytes:,} + {fp.code_bytes:,} = {fp.flash_bytes:,} B")
    table.add_row("arena (RAM)", f"{manifest['arena_bytes']:,} B")
    for k, v in result["inferences_per_second"].items():
        table.add_row(f"inferences/s, {k}", f"{v:,.1f}")
    Console().print(table)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
