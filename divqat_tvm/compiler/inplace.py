"""Which hand-written kernels may write their output over an input that dies at their call, and how far below
that input the output must then start (`lead`, bytes). The arena planner (memory.pack) uses these as
`memory.Overlap`s; scripts/arena_bound.py's liveness bound assumes exactly the same ones.

Why each is safe, from the kernel's own order of reads and writes (the tests in
tests/compiler/test_inplace.py run every such layer over its input on the host and under QEMU):

- divqat_add_s8 (csrc/add_s8.c): elementwise and ascending; each element (scalar paths) or block of 4 lanes
  (MVE) is read before it is written, and nothing below it is read again. The output may start at the input
  or anywhere below it: lead 0.
- divqat_conv_s8 (csrc/conv_s8.c): output pixels in row-major order, in blocks of at most CONV_PIXEL_BLOCK
  pixels starting at multiples of it (DSP 4, MVE 2, plain C 1); a block's bytes are written while inputs of
  the same block may still be read (the MVE and C paths read a 1x1 layer's input in place, channel by
  channel), never before the block's own reads start. So the writes of block b must land below every input
  byte that block b or a later one reads: with the output at x - lead,
  lead >= (end of block b) * cout - (lowest input byte read by a pixel >= the start of block b), for every b.
  The scratch (im2col) is a separate tensor; the weights and constants are in flash.
- divqat_conv_rows_s8 (csrc/conv_rows_s8.c): the same rule and lead as divqat_conv_s8: output pixels in row-major
  order, in blocks of 1 (DSP, C) or 2 (MVE) pixels starting at multiples of their size, so every block lies inside
  one CONV_PIXEL_BLOCK block and the lead for blocks of 4 covers it; it reads only the input (no scratch).
- divqat_conv_rows_add_s8 (the same file, a conv with its residual ADD): over the residual input only, and
  exactly at its address (`memory.Overlap.exact`): each output element is computed from the conv's input alone,
  then the residual's element at the same index is read and the result written there; no other residual byte
  is read for it. Lower would not be safe (the MVE path writes pixel b's group before pixel a's next group).
- every other kernel (depthwise with its ring rows, TVM's TE loops): no overlap.

The leads hold for the kernel sources they were derived from: VERIFIED pins a digest of each, and a kernel whose
C has changed since gets no overlap (a larger arena, never a wrong answer) until its order of reads and writes
has been checked again and the digest updated (tests/compiler/test_inplace.py fails until then).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from divqat_tvm.compiler import memory, native
from divqat_tvm.compiler.graph import Conv2D, Graph
from divqat_tvm.compiler.ops import conv

#: the largest block of output pixels any path of csrc/conv_s8.c writes before it has read its inputs
CONV_PIXEL_BLOCK = 4

#: kernel -> (its source in csrc/, sha256 prefix of the version whose access order the lead was derived from)
VERIFIED = {
    "divqat_conv_s8": ("conv_s8.c", "5d8c4145c9e94554"),
    "divqat_add_s8": ("add_s8.c", "9dda4fbe223fef25"),
    "divqat_conv_rows_s8": ("conv_rows_s8.c", "5591b42b4a7ab773"),
    "divqat_conv_rows_add_s8": ("conv_rows_s8.c", "5591b42b4a7ab773"),
}


@functools.cache
def source_digest(file: str) -> str:
    return hashlib.sha256((native.CSRC / file).read_bytes()).hexdigest()[:16]


def verified(function: str) -> bool:
    """Whether `function`'s C is the version its overlap rule was checked against."""
    file, digest = VERIFIED[function]
    return source_digest(file) == digest


_D = {f: i for i, f in enumerate(native.DESC_FIELDS)}


def _first_inside(start: np.ndarray, step: int, taps: int, size: int) -> np.ndarray:
    """Index of the first in-bounds position start + k*step (k < taps) per entry; `size` (none) where all fall outside."""
    k = np.where(start < 0, -(start // step), 0)  # ceil(-start / step): a window that starts above/left
    pos = start + k * step
    return np.where((k < taps) & (pos < size), pos, size)


def conv_min_reads(desc: np.ndarray) -> np.ndarray:
    """Lowest input byte each output pixel of divqat_conv_s8 reads (row-major pixels); a huge value for a pixel
    whose window is all padding."""
    g = {f: int(desc[i]) for f, i in _D.items()}
    p = np.arange(g["oh"] * g["ow"], dtype=np.int64)
    oy, ox = p // g["ow"], p % g["ow"]
    iy = _first_inside(oy * g["sh"] - g["pt"], g["dh"], g["kh"], g["ih"])
    ix = _first_inside(ox * g["sw"] - g["pl"], g["dw"], g["kw"], g["iw"])
    inside = (iy < g["ih"]) & (ix < g["iw"])
    return np.where(inside, (iy * g["iw"] + ix) * g["cin"], np.iinfo(np.int64).max // 2)


def conv_lead(desc: np.ndarray, block: int = CONV_PIXEL_BLOCK) -> int:
    """Bytes by which divqat_conv_s8's output must start below its input to overlap it (aligned up)."""
    reads = conv_min_reads(desc)
    npix, cout = len(reads), int(desc[_D["cout"]])
    later = np.minimum.accumulate(reads[::-1])[::-1]  # lowest byte read by any pixel >= p
    starts = np.arange(0, npix, block)
    ends = np.minimum(starts + block, npix) * cout
    return memory.align_up(max(int(np.max(ends - later[starts])), 0))


@dataclass(frozen=True)
class Rule:
    """The output may be written over the call's input at position `arg` (in the call's argument order), starting
    `lead` bytes below it or lower, or (`exact`) exactly at its address."""

    arg: int
    lead: int
    exact: bool = False


def kernel_rules(call: native.NativeCall) -> list[Rule]:
    """The overlaps a native call's kernel allows (none for a kernel changed since its order was checked)."""
    if call.function in VERIFIED and not verified(call.function):
        return []  # changed since its access order was checked: no overlap
    if call.function == "divqat_add_s8":
        return [Rule(0, 0), Rule(1, 0)]
    if call.function == "divqat_conv_rows_add_s8":
        return [Rule(1, 0, exact=True)]
    desc = call.consts[2] if len(call.consts) > 2 else None
    if call.function in ("divqat_conv_s8", "divqat_conv_rows_s8") and desc is not None:
        if int(desc[_D["oh"]]) * int(desc[_D["ow"]]) > 1:
            return [Rule(0, conv_lead(desc))]
    return []  # fully connected (one pixel) gains nothing; depthwise and TE kernels never overlap


def kernel_lead(call: native.NativeCall) -> int | None:
    """The lead of a native call whose kernel may write over an input (its first rule's), else None."""
    rules = kernel_rules(call)
    return rules[0].lead if rules else None


def op_inplace(chosen: dict[int, Any]) -> dict[int, dict[str, Any]]:
    """{op index: {"inputs": op input positions the output may overwrite, "lead_bytes": lead[, "exact": True]}}
    (the manifest's ops[].inplace) for the ops whose kernel allows it."""
    out: dict[int, dict[str, Any]] = {}
    for i, call in chosen.items():
        rules = kernel_rules(call) if call is not None else []
        if rules:
            entry: dict[str, Any] = {"inputs": sorted(call.inputs[r.arg] for r in rules), "lead_bytes": rules[0].lead}
            if any(r.exact for r in rules):
                entry["exact"] = True
            out[i] = entry
    return out


def overlaps(plan_calls: list[tuple[str, list[str]]], chosen: dict[int, Any], arena: set[str]) -> list[memory.Overlap]:
    """The allowed overlaps of the planned main: call i (graph op i) with native call `chosen[i]` may place its
    output over an activation argument that is an arena tensor whose last use is call i."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, (_, args) in enumerate(plan_calls):
        for a in args:
            first.setdefault(a, i)
            last[a] = i
    result: list[memory.Overlap] = []
    for i, (_, args) in enumerate(plan_calls):
        call = chosen.get(i)
        rules = kernel_rules(call) if call is not None else []
        if call is None or not rules:
            continue
        out = args[len(call.inputs) + len(call.consts)]
        if out not in arena or first[out] != i:
            continue
        for r in rules:
            name = args[r.arg]
            if name in arena and last[name] == i and name != out:
                result.append(memory.Overlap(out, name, r.lead, r.exact))
    return result


# ---------------------------------------------------------------- the planner's choice of scratch-free convs
def graph_live_bytes(graph: Graph, calls: dict[int, Any]) -> dict[int, int]:
    """Bytes alive at each op of `graph` run by `calls` ({op index: NativeCall or None}): its activations (not the
    graph's input and output: the caller's buffers), each kernel's scratch, less the overlaps its kernel allows:
    the same intervals and overlaps the arena is packed from (one call per op)."""
    outside = {graph.input, graph.output}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        for name in [*op.inputs, op.output]:
            if name not in outside:
                first.setdefault(name, i)
                last[name] = i
    ivs = [memory.Interval(n, graph.tensors[n].nbytes, first[n], last[n]) for n in first]
    ovl: list[memory.Overlap] = []
    for i, op in enumerate(graph.ops):
        call = calls.get(i)
        if call is None:
            continue
        if call.scratch_bytes:
            ivs.append(memory.Interval(f"scratch{i}", call.scratch_bytes, i, i))
        for r in kernel_rules(call):
            name = op.inputs[call.inputs[r.arg]]
            if op.output not in outside and name not in outside and last.get(name) == i:
                ovl.append(memory.Overlap(op.output, name, r.lead, r.exact))
    return memory.live_bytes(ivs, ovl)


def scratch_free(graph: Graph, scheme: str, calls: dict[int, Any], fixed: set[int] = frozenset()) -> dict[int, Any]:  # type: ignore[assignment]
    """{op index: divqat_conv_rows_s8 call} for the convs whose scratch sets the arena's peak: while every op at the
    peak has a scratch and a scratch-free kernel (ops.conv.rows_call) that lowers it, they take it; the others keep
    their kernel with its scratch (faster on some cores, and half the weight flash). Where the scratch alone is the
    peak (a single layer between the caller's buffers) nothing changes. `fixed`: ops whose kernel was chosen
    elsewhere (tuning)."""
    chosen: dict[int, Any] = {}
    current = dict(calls)
    while True:
        live = graph_live_bytes(graph, current)
        if not live:
            return chosen
        peak = max(live.values())
        at = [i for i, v in live.items() if v == peak]
        if all(peak == memory.align_up(getattr(current.get(i), "scratch_bytes", 0)) for i in at):
            return chosen  # the scratch alone is the peak (a layer between the caller's buffers): nothing to share
        swap: dict[int, Any] = {}
        for i in at:
            call, op = current.get(i), graph.ops[i]
            alt = None
            if call is not None and call.scratch_bytes and i not in fixed and type(op) is Conv2D:
                alt = conv.rows_call(graph, op, scheme)
            if alt is None:
                return chosen  # an op at the peak keeps it whatever the others do
            swap[i] = alt
        trial = {**current, **swap}
        if max(graph_live_bytes(graph, trial).values()) >= peak:
            return chosen
        current = trial
        chosen.update(swap)
