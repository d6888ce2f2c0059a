"""One static arena for the planned main: lifetimes from the call sequence, offsets by greedy packing.

TVM's StaticPlanBlockMemory groups tensors into storage tokens (each as large as its largest tenant);
laying the tokens side by side can exceed the true peak. We keep TVM's call order and tensors and pack
the tensors themselves into one arena (lowest offset that does not overlap a tensor alive at the same time,
in a few placement orders, like TFLite Micro's greedy planner), keeping the smallest.

Tensors alive at the same call never share bytes, except an `Overlap`: a kernel that provably never clobbers
an input byte it has still to read (compiler/inplace.py) may write its output over that input, starting
`lead` bytes below it (or lower), when the input dies at that call; an `exact` overlap only at the input's own
address (a kernel that reads each element just before it writes the same element, and nothing else of it). The packer then also tries each chain of
such overlaps (a conv writing over its input, the residual add over that) as one rigid block, which a
lowest-offset greedy would not find on its own (it places the input first, with no room below it).
`peak_live_bytes` is the matching lower bound: the largest sum of live bytes at one call, minus what the
best overlap at that call saves.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class Overlap:
    """`out` may share bytes with `inp` if it starts at least `lead` bytes below it: the kernel writing `out`
    at the call where `inp` dies never overwrites a byte of `inp` it has still to read (compiler/inplace.py)."""

    out: str
    inp: str
    lead: int
    exact: bool = False  # only at the input's address (lead 0, nothing lower)

    def saving(self, out_bytes: int, inp_bytes: int) -> int:
        """Bytes the overlap saves at its call: the output's bytes that can lie inside the input."""
        return min(max(align_up(out_bytes) - align_up(self.lead), 0), align_up(inp_bytes))


#: the lead recorded for an exact overlap (memory-internal: the pair may share bytes only at equal offsets)
EXACT = -1


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


@dataclass(frozen=True)
class _Unit:
    """Tensors placed together: (interval, offset inside the unit). One tensor, or a chain of overlaps."""

    members: tuple[tuple[Interval, int], ...]

    @property
    def nbytes(self) -> int:
        return max(rel + align_up(iv.nbytes) for iv, rel in self.members)

    @property
    def first(self) -> int:
        return min(iv.first for iv, _ in self.members)

    @property
    def last(self) -> int:
        return max(iv.last for iv, _ in self.members)

    @property
    def name(self) -> str:
        return self.members[0][0].name


#: orders in which `pack` places the units (it keeps the smallest arena): largest first (TFLite Micro's
#: greedy planner), then by first use, then longest-lived first, then by bytes x lifetime
_ORDERS: tuple[Callable[[_Unit], tuple], ...] = (
    lambda t: (-t.nbytes, t.first, t.name),
    lambda t: (t.first, -t.nbytes, t.name),
    lambda t: (-(t.last - t.first), -t.nbytes, t.name),
    lambda t: (-t.nbytes * (t.last - t.first + 1), t.first, t.name),
)

_Leads = dict[tuple[str, str], int]


def pack(intervals: list[Interval], overlaps: Sequence[Overlap] = ()) -> tuple[dict[str, int], int]:
    """Greedy offsets (aligned) for intervals, the best of a few placement orders, with and without the overlap
    chains as rigid blocks; returns (offsets, arena bytes)."""
    by_name = {iv.name: iv for iv in intervals}
    leads = _valid_leads(by_name, overlaps)
    singles = [_Unit(((iv, 0),)) for iv in intervals]
    groupings = [singles]
    needed = _needed(by_name, leads, peak_live_bytes(intervals, overlaps))
    for links in (leads, needed):
        for prefer_last in (False, True):
            chained = _chains(by_name, links, prefer_last)
            if len(chained) < len(singles) and chained not in groupings:
                groupings.append(chained)
    live = live_bytes(intervals, overlaps)
    bound = max(live.values(), default=0)
    peak_steps = [s for s, v in live.items() if v == bound]
    best: tuple[dict[str, int], int] | None = None
    for units in groupings:
        for key in _ORDERS:
            offsets, size = _pack_in_order(sorted(units, key=key), leads)
            if best is None or size < best[1]:
                best = (offsets, size)
    if best is None:
        return {}, 0
    for units in groupings:  # only when the usual orders miss the bound: many more orders
        for order in _peak_first_orders(units, peak_steps) if best[1] > bound else []:
            offsets, size = _pack_in_order(order, leads)
            if size < best[1]:
                best = (offsets, size)
            if best[1] == bound:
                return best
    return best


_MAX_PEAK_UNITS = 5  # every order of up to this many units alive at a peak call (at most 120 orders per call)
_MAX_PEAK_CALLS = 8  # the first calls at the peak whose alive units are tried first


def _peak_first_orders(units: list[_Unit], peak_steps: list[int]) -> list[list[_Unit]]:
    """Orders that place the units alive at a peak call first, in every order, then the rest in each of _ORDERS: the
    greedy puts the first unit at offset 0, and at the peak that choice decides whether the bound is reached (e.g. a
    chain of overlaps that needs room below it must not be the one at 0)."""
    orders: list[list[_Unit]] = []
    seen: set[tuple[str, ...]] = set()
    for step in peak_steps[:_MAX_PEAK_CALLS]:
        alive = [u for u in units if u.first <= step <= u.last]
        names = tuple(sorted(u.name for u in alive))
        if names in seen or not 1 < len(alive) <= _MAX_PEAK_UNITS:
            continue
        seen.add(names)
        others = [u for u in units if not u.first <= step <= u.last]
        for key in _ORDERS:
            rest = sorted(others, key=key)
            orders += [[*perm, *rest] for perm in itertools.permutations(alive)]
    return orders


def _valid_leads(by_name: dict[str, Interval], overlaps: Sequence[Overlap]) -> _Leads:
    """(out, inp) -> aligned lead, for overlaps whose input dies exactly where the output is born."""
    leads: _Leads = {}
    for o in overlaps:
        out, inp = by_name.get(o.out), by_name.get(o.inp)
        if out is not None and inp is not None and out.name != inp.name and inp.last == out.first:
            leads[(o.out, o.inp)] = EXACT if o.exact else align_up(o.lead)
    return leads


def _forbidden(m: Interval, p: Interval, off_p: int, leads: _Leads) -> tuple[int, int]:
    """The open range of offsets of `m` that collide with `p` placed at off_p (both alive at one call). An exact
    overlap's one allowed offset is not a range: only a chain (`_chains`) places such a pair together."""
    s_m, s_p = align_up(m.nbytes), align_up(p.nbytes)
    lo, hi = off_p - s_m, off_p + s_p
    if leads.get((m.name, p.name), EXACT) != EXACT:  # m is written over p: it may start lead bytes below p, or lower
        lo = off_p - min(s_m, leads[(m.name, p.name)])
    if leads.get((p.name, m.name), EXACT) != EXACT:  # p is written over m: m may start lead bytes above p, or higher
        hi = off_p + min(leads[(p.name, m.name)], s_p)
    return lo, hi


def _needed(by_name: dict[str, Interval], leads: _Leads, bound: int) -> _Leads:
    """The overlaps at calls whose live bytes exceed the bound without them. Chaining only these keeps the
    chains short: a rigid chain drifts down by each lead, which costs bytes where no overlap was needed."""
    live: dict[int, int] = {}
    for iv in by_name.values():
        for s in range(iv.first, iv.last + 1):
            live[s] = live.get(s, 0) + align_up(iv.nbytes)
    return {k: v for k, v in leads.items() if live[by_name[k[0]].first] > bound}


def _chains(by_name: dict[str, Interval], leads: _Leads, prefer_last: bool = False) -> list[_Unit]:
    """Units: each chain of overlaps (an output over its best input, that input over its own, ...) with the
    relative offsets the leads give, and every other tensor alone. Between inputs that save as much (an add's),
    the first or the last in name order. A chain whose members would collide falls back to single tensors."""
    parent: dict[str, str] = {}
    for (out, inp), lead in sorted(leads.items(), reverse=prefer_last):
        best = parent.get(out)
        if best is None or _saving(by_name, out, inp, lead) > _saving(by_name, out, best, leads[(out, best)]):
            parent[out] = inp
    child = {inp: out for out, inp in parent.items()}
    if len(child) != len(parent):  # an input chosen by two outputs cannot happen (it dies at one call)
        return [_Unit(((iv, 0),)) for iv in by_name.values()]
    units: list[_Unit] = []
    for name in by_name:
        if name in parent:
            continue  # not a chain head
        members, rel = [(by_name[name], 0)], 0
        while members[-1][0].name in child:
            out = child[members[-1][0].name]
            rel -= max(leads[(out, members[-1][0].name)], 0)  # an exact overlap: the same offset
            members.append((by_name[out], rel))
        low = min(r for _, r in members)
        chain = [(iv, r - low) for iv, r in members]
        if _consistent(chain, leads):
            units.append(_Unit(tuple(chain)))
        else:
            units += [_Unit(((iv, 0),)) for iv, _ in chain]
    return units


def _saving(by_name: dict[str, Interval], out: str, inp: str, lead: int) -> int:
    return Overlap(out, inp, max(lead, 0)).saving(by_name[out].nbytes, by_name[inp].nbytes)


def _consistent(members: list[tuple[Interval, int]], leads: _Leads) -> bool:
    for i, (a, ra) in enumerate(members):
        for b, rb in members[i + 1 :]:
            if ra == rb and EXACT in (leads.get((a.name, b.name)), leads.get((b.name, a.name))):
                continue  # an exact overlap in its place
            if a.overlaps(b):
                lo, hi = _forbidden(a, b, rb, leads)
                if lo < ra < hi:
                    return False
    return True


def _pack_in_order(units: list[_Unit], leads: _Leads) -> tuple[dict[str, int], int]:
    placed: list[tuple[Interval, int]] = []
    offsets: dict[str, int] = {}
    for unit in units:
        bans = sorted(
            (lo - rel, hi - rel)
            for m, rel in unit.members
            for p, off in placed
            if p.overlaps(m)
            for lo, hi in [_forbidden(m, p, off, leads)]
        )
        base = _lowest_free(bans)
        for m, rel in unit.members:
            offsets[m.name] = base + rel
            placed.append((m, base + rel))
    size = max((off + align_up(p.nbytes) for p, off in placed), default=0)
    return offsets, size


def _lowest_free(bans: list[tuple[int, int]]) -> int:
    """The lowest offset >= 0 inside none of the open ranges (lo, hi), which come sorted by lo: one pass, as
    every range passed over ends at or below the offset reached."""
    base = 0
    for lo, hi in bans:
        if lo >= base:
            break
        base = max(base, hi)
    return base


def live_bytes(intervals: list[Interval], overlaps: Sequence[Overlap] = ()) -> dict[int, int]:
    """{call index: the (aligned) bytes alive at that call, less the bytes the best overlap allowed there saves}."""
    if not intervals:
        return {}
    by_name = {iv.name: iv for iv in intervals}
    saving: dict[int, int] = {}
    for (out, inp), lead in _valid_leads(by_name, overlaps).items():
        step = by_name[out].first
        saving[step] = max(saving.get(step, 0), _saving(by_name, out, inp, lead))
    steps = range(min(i.first for i in intervals), max(i.last for i in intervals) + 1)
    return {s: sum(align_up(i.nbytes) for i in intervals if i.first <= s <= i.last) - saving.get(s, 0) for s in steps}


def peak_live_bytes(intervals: list[Interval], overlaps: Sequence[Overlap] = ()) -> int:
    """Lower bound for any arena: the largest sum of (aligned) bytes alive at one call, less the bytes the best
    overlap allowed at that call saves."""
    return max(live_bytes(intervals, overlaps).values(), default=0)


def shared_bytes(offsets: dict[str, int], intervals: list[Interval], overlaps: Sequence[Overlap]) -> dict[Overlap, int]:
    """Bytes each allowed overlap actually shares in a placement (0 where the packer kept them apart)."""
    size = {iv.name: align_up(iv.nbytes) for iv in intervals}
    out: dict[Overlap, int] = {}
    for o in overlaps:
        if o.out in offsets and o.inp in offsets:
            a, b = offsets[o.out], offsets[o.inp]
            out[o] = max(0, min(a + size[o.out], b + size[o.inp]) - max(a, b))
    return out
