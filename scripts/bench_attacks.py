#!/usr/bin/env python
"""Throughput of each attack against each available victim backend: queries/s and time per 10k queries.

Runs every attack with a small, fixed budget (printed beside every figure) against each backend given
(torch checkpoint; tvm-host / qemu build folders once compiled), and measures both the whole attack
(queries + the attacker's own training) and the time spent inside the victim alone.

    .venv/bin/python scripts/bench_attacks.py --torch runs/victim.pt [--tvm-host build/m] [--qemu build/m]
        [--attacks knockoff,dfme,maze] [--out runs/bench_attacks.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch

from divqat_tvm.attacks import DFMEConfig, FitConfig, KnockoffConfig, MAZEConfig, run_attack
from divqat_tvm.data import dataset_info, load_dataset
from divqat_tvm.errors import DivqatError
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.models import build_model
from divqat_tvm.oracle import open_oracle
from divqat_tvm.oracle.base import Oracle

CONFIGS = {
    # Scaled-down CPU budgets; batch sizes are the attacks' official ones except where noted.
    "knockoff": KnockoffConfig(budget=2_000, query_batch=8, fit=FitConfig(epochs=1)),
    "dfme": DFMEConfig(budget=7 * 64 * 10, batch_size=64, epoch_itrs=5),
    "maze": MAZEConfig(budget=15 * 32 * 10, batch_size=32),
}


class TimedOracle(Oracle):
    """Wraps a victim and accumulates the wall time spent answering."""

    kind = "timed"

    def __init__(self, inner: Oracle) -> None:
        super().__init__(inner.input_shape, inner.num_classes)
        self.inner = inner
        self.seconds = 0.0

    def _query(self, x: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        p = self.inner.query(x)
        self.seconds += time.perf_counter() - t
        return p

    def close(self) -> None:
        self.inner.close()


def bench(attack: str, spec: str, test_set: str, surrogate: str, student: str) -> dict:
    info = dataset_info(test_set)
    cfg = CONFIGS[attack]
    sur = None
    if attack == "knockoff":
        sur = load_dataset(
            surrogate, "train", augment=True, normalization={"mean": list(info.mean), "std": list(info.std)}
        )
    torch.manual_seed(0)
    model = build_model(student, info.input_shape[0], info.num_classes, info.input_shape[1])
    with open_oracle(spec) as inner:
        oracle = TimedOracle(inner)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            res = run_attack(attack, oracle, model, out, cfg, seed=0, surrogate=sur)
        wall = time.perf_counter() - t
    q = res["queries_used"]
    return {
        "attack": attack,
        "backend": spec.split(":", 1)[0],
        "victim": spec,
        "budget": cfg.budget,
        "queries": q,
        "batch": getattr(cfg, "query_batch", getattr(cfg, "batch_size", None)),
        "attack_queries_per_s": q / wall,
        "attack_s_per_10k": 1e4 * wall / q,
        "victim_queries_per_s": q / oracle.seconds,
        "victim_s_per_10k": 1e4 * oracle.seconds / q,
        "wall_s": wall,
        "victim_s": oracle.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch", help="victim checkpoint for the torch backend")
    ap.add_argument("--tvm-host", help="compiled build folder for the tvm-host backend")
    ap.add_argument("--qemu", help="compiled build folder (with firmware) for the qemu backend, optionally @board")
    ap.add_argument("--attacks", default="knockoff,dfme,maze")
    ap.add_argument("--test-set", default="mnist5k")
    ap.add_argument("--surrogate", default="digits20")
    ap.add_argument("--student", default="tinycnn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_attacks.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    specs = [f"{k}:{v}" for k, v in (("torch", a.torch), ("tvm-host", a.tvm_host), ("qemu", a.qemu)) if v]
    if not specs:
        ap.error("give at least one of --torch, --tvm-host, --qemu")
    rows = []
    print(
        f"{'attack':9} {'backend':9} {'budget':>7} {'batch':>5} {'attack q/s':>11} {'attack s/10k':>13} {'victim q/s':>11} {'victim s/10k':>13}"
    )
    for attack in a.attacks.split(","):
        for spec in specs:
            try:
                r = bench(attack, spec, a.test_set, a.surrogate, a.student)
            except DivqatError as e:  # a device failure costs one row, not the whole benchmark
                rows.append({"attack": attack, "backend": spec.split(":", 1)[0], "victim": spec, "error": str(e)})
                print(f"{attack:9} {spec.split(':', 1)[0]:9} failed: {e}", flush=True)
                continue
            rows.append(r)
            print(
                f"{attack:9} {r['backend']:9} {r['budget']:>7,} {r['batch']:>5} {r['attack_queries_per_s']:>11.1f} "
                f"{r['attack_s_per_10k']:>13.1f} {r['victim_queries_per_s']:>11.1f} {r['victim_s_per_10k']:>13.1f}",
                flush=True,
            )
    atomic_write_json(
        a.out,
        {
            "threads": a.threads,
            "student": a.student,
            "test_set": a.test_set,
            "rows": rows,
            "note": "attack = queries + the attacker's training; victim = time inside oracle.query only",
        },
    )
    print(f"→ {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
