"""Determinism by construction: the same seed gives bit-identical weights, query logs and reports, whatever
`--threads` or `--workers` say.

Two things break that on a CPU, and both are handled here:
- **Intra-op threads.** torch splits a convolution's weight gradient (and some reductions) over its threads;
  float addition is not associative, so 1 and 2 threads give different weights after one step (measured: a
  tinycnn teacher after one epoch on 512 MNIST images hashes differently with `--threads 1` and `2`). Every
  numeric step that feeds a result (training, calibration, evaluation, attacks) runs inside
  `fixed_threads()`, which pins torch to `NUMERIC_THREADS` (1) and restores the caller's count afterwards.
  `--threads` therefore no longer changes results; it only sizes torch's pool outside these sections.
- **Random state left over by earlier work** in the same process (a worker that ran another task first).
  Each task calls `seed_everything(seed)` with a seed that is a function of its own key (`derive_seed`), so
  nothing depends on which task ran before it or on completion order.

What this does not cover: torch, oneDNN and MKL pick their float kernels by the CPU's vector ISA, so two
machines whose ISA differs (AVX-512 against AVX2) round differently and give different weights from the same
seed. Every task therefore records `float_numerics()` beside its result, and the report says when a run's
tasks were computed under more than one (README, "same seed, same bits").
"""

from __future__ import annotations

import hashlib
import platform
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

#: torch intra-op threads of every numeric section; 1 is also the fastest per core on a shared 2-core machine.
#: 0 turns the pinning off (tests use it to show that without it the thread count changes the weights).
NUMERIC_THREADS = 1


@contextmanager
def fixed_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with torch pinned to `n` (default `NUMERIC_THREADS`) intra-op threads, restored afterwards."""
    n = NUMERIC_THREADS if n is None else n
    before = torch.get_num_threads()
    if n > 0 and before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's legacy and Python's global RNGs (each task does this first)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from the parts of a key (same parts, same seed, in every process and run)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def float_numerics() -> dict[str, str]:
    """What decides a float result's bits beyond the seed: torch's version and the vector ISA its kernels use
    (`ATEN_CPU_CAPABILITY` can lower it, e.g. to `avx2`, for a run that must match an AVX2 machine)."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def numeric(fn):
    """Decorator: run `fn` inside `fixed_threads()` (training loops, calibration, evaluation, attacks)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with fixed_threads():
            return fn(*args, **kwargs)

    return wrapper
