#!/usr/bin/env python
"""Training throughput of QAT vs DivQAT on the same student: images/s and DivQAT's time per epoch relative to QAT.

DivQAT's only extra work per step is the frozen teacher's forward pass (no grad) and a KL on the logits, so its
epoch should cost at most ~1.3× QAT's. QAT and DivQAT epochs are interleaved (QAT, DivQAT, QAT, …) so a busy
shared machine slows both alike; the median of the repeats is reported, both in wall-clock seconds and in CPU
seconds of this process (robust to other processes on a busy machine; with 1 thread CPU time ≈ the work done).
Prints a table and writes JSON.

    .venv/bin/python scripts/bench_train.py                       # tinycnn on mnist5k, 1 thread
    .venv/bin/python scripts/bench_train.py --arch resnet8 --dataset synthetic:3x32x32:10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from divqat_tvm.data import load_dataset
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.models import build_model
from divqat_tvm.quant.config import DivQATConfig, QuantConfig
from divqat_tvm.train.loop import TrainConfig
from divqat_tvm.train.recipes import make_student, train_teacher


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--arch", default="tinycnn")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per method (interleaved)")
    p.add_argument(
        "--teacher-epochs", type=int, default=1, help="teacher training before timing (accuracy is irrelevant here)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/bench/bench_train.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    a = _args(argv)
    torch.set_num_threads(max(1, a.threads))
    train = load_dataset(a.dataset, "train", augment=True)
    info = train.info
    torch.manual_seed(0)
    teacher = build_model(a.arch, info.input_shape[0], info.num_classes, info.input_shape[1])
    train_teacher(teacher, train, TrainConfig(epochs=a.teacher_epochs, progress=False))
    cfg = TrainConfig(epochs=1, batch_size=a.batch_size, lr=0.003, progress=False)
    methods = {
        "qat": (QuantConfig(method="qat"), None),
        "divqat": (QuantConfig(method="divqat"), DivQATConfig(alpha=1.0)),
    }
    secs: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    make_student(teacher, train, methods["qat"][0], cfg)  # warm-up (allocator, first-call overheads)
    for r in range(a.repeats):
        for m, (q, d) in methods.items():
            t0 = time.perf_counter()
            _, hist = make_student(teacher, train, q, cfg, d)
            secs[m].append(hist[0]["seconds"])
            cpu[m].append(hist[0]["cpu_seconds"])
            print(
                f"repeat {r + 1}/{a.repeats} {m}: {hist[0]['seconds']:.2f} s/epoch wall, {hist[0]['cpu_seconds']:.2f} s CPU ({time.perf_counter() - t0:.2f} s incl. calibration)",
                file=sys.stderr,
            )
    n = len(train)
    res = {
        m: {
            "seconds_per_epoch_median": statistics.median(v),
            "seconds_per_epoch": v,
            "images_per_s": n / statistics.median(v),
            "cpu_seconds_per_epoch_median": statistics.median(cpu[m]),
            "cpu_seconds_per_epoch": cpu[m],
            "images_per_cpu_s": n / statistics.median(cpu[m]),
        }
        for m, v in secs.items()
    }
    ratio = res["divqat"]["seconds_per_epoch_median"] / res["qat"]["seconds_per_epoch_median"]
    ratio_cpu = res["divqat"]["cpu_seconds_per_epoch_median"] / res["qat"]["cpu_seconds_per_epoch_median"]
    report = {
        "arch": a.arch,
        "dataset": info.name,
        "train_images": n,
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "repeats": a.repeats,
        "results": res,
        "divqat_over_qat_time_per_epoch": ratio,
        "divqat_over_qat_cpu_time_per_epoch": ratio_cpu,
        "goal": 1.3,
        "torch": torch.__version__,
    }
    atomic_write_json(a.out, report)
    t = Table(
        title=f"training throughput, {a.arch} on {info.name}, batch {a.batch_size}, {torch.get_num_threads()} thread(s), median of {a.repeats}"
    )
    t.add_column("method")
    t.add_column("s / epoch", justify="right")
    t.add_column("images / s", justify="right")
    t.add_column("CPU s / epoch", justify="right")
    t.add_column("images / CPU s", justify="right")
    for m, r in res.items():
        t.add_row(
            m,
            f"{r['seconds_per_epoch_median']:.2f}",
            f"{r['images_per_s']:.0f}",
            f"{r['cpu_seconds_per_epoch_median']:.2f}",
            f"{r['images_per_cpu_s']:.0f}",
        )
    con = Console(soft_wrap=True, width=160)
    con.print(t)
    con.print(f"DivQAT / QAT time per epoch: {ratio:.2f}x wall, {ratio_cpu:.2f}x CPU (goal <= 1.3x). JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
