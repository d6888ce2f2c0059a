"""One static arena for the planned main: lifetimes from the call sequence, offsets by greedy packing.

TVM's StaticPlanBlockMemory groups tensors into storage tokens (each as large as its largest tenant);
laying the tokens side by side can exceed the true peak. We keep TVM's call order and tensors and pack
the tensors themselves into one arena (largest first, lowest offset that does not overlap a tensor
alive at the same time), like TFLite Micro's greedy planner.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class Interval:
    """A tensor's bytes and the first/last call index that touch it (inclusive)."""

    name: str
    nbytes: int
    first: int
    last: int

    def overlaps(self, other: Interval) -> bool:
        return self.first <= other.last and other.first <= self.last


def lifetimes(calls: list[tuple[str, list[str]]], arena_names: set[str]) -> list[Interval]:
    """Intervals of the arena tensors from (function, args) calls in order."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, (_, args) in enumerate(calls):
        for a in args:
            if a in arena_names:
                first.setdefault(a, i)
                last[a] = i
    return [Interval(n, 0, first[n], last[n]) for n in first]


#: orders in which `pack` places the tensors (it keeps the smallest arena): largest first (TFLite Micro's
#: greedy planner), then by first use, then longest-lived first
_ORDERS = (
    lambda t: (-t.nbytes, t.first, t.name),
    lambda t: (t.first, -t.nbytes, t.name),
    lambda t: (-(t.last - t.first), -t.nbytes, t.name),
    lambda t: (-t.nbytes * (t.last - t.first + 1), t.first, t.name),
)


def pack(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    """Greedy offsets (aligned) for intervals, the best of a few placement orders; returns (offsets, arena bytes)."""
    best: tuple[dict[str, int], int] | None = None
    for key in _ORDERS:
        offsets, size = _pack_in_order(sorted(intervals, key=key))
        if best is None or size < best[1]:
            best = (offsets, size)
    return best if best is not None else ({}, 0)


def _pack_in_order(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    placed: list[tuple[Interval, int]] = []
    offsets: dict[str, int] = {}
    for iv in intervals:
        busy = sorted((off, off + align_up(p.nbytes)) for p, off in placed if p.overlaps(iv))
        offset = 0
        for lo, hi in busy:
            if offset + align_up(iv.nbytes) <= lo:
                break
            offset = max(offset, hi)
        offsets[iv.name] = offset
        placed.append((iv, offset))
    size = max((off + align_up(p.nbytes) for p, off in placed), default=0)
    return offsets, size


def peak_live_bytes(intervals: list[Interval]) -> int:
    """Lower bound for any arena: the largest sum of (aligned) bytes alive at one call."""
    if not intervals:
        return 0
    steps = range(min(i.first for i in intervals), max(i.last for i in intervals) + 1)
    return max(sum(align_up(i.nbytes) for i in intervals if i.first <= s <= i.last) for s in steps)
