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
- every other kernel (depthwise with its ring rows, TVM's TE loops): no overlap.

The leads hold for the kernel sources they were derived from: VERIFIED pins a digest of each, and a kernel whose
C has changed since gets no overlap (a larger arena, never a wrong answer) until its order of reads and writes
has been checked again and the digest updated (tests/compiler/test_inplace.py fails until then).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

from divqat_tvm.compiler import memory, native

#: the largest block of output pixels any path of csrc/conv_s8.c writes before it has read its inputs
CONV_PIXEL_BLOCK = 4

#: kernel -> (its source in csrc/, sha256 prefix of the version whose access order the lead was derived from)
VERIFIED = {
    "divqat_conv_s8": ("conv_s8.c", "a92901375955d31d"),
    "divqat_add_s8": ("add_s8.c", "d9c1d2a5eb4dac58"),
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


def kernel_lead(call: native.NativeCall) -> int | None:
    """The lead of a native call whose kernel may write over its input, else None."""
    if call.function in VERIFIED and not verified(call.function):
        return None  # changed since its access order was checked: no overlap
    if call.function == "divqat_add_s8":
        return 0
    if call.function == "divqat_conv_s8" and int(call.consts[2][_D["oh"]]) * int(call.consts[2][_D["ow"]]) > 1:
        return conv_lead(call.consts[2])
    return None  # fully connected (one pixel) gains nothing; depthwise and TE kernels never overlap


def op_inplace(chosen: dict[int, Any]) -> dict[int, dict[str, Any]]:
    """{op index: {"inputs": op input positions the output may overwrite, "lead_bytes": lead}} (the manifest's
    ops[].inplace) for the ops whose kernel allows it."""
    out: dict[int, dict[str, Any]] = {}
    for i, call in chosen.items():
        lead = kernel_lead(call) if call is not None else None
        if call is not None and lead is not None:
            out[i] = {"inputs": sorted(call.inputs), "lead_bytes": lead}
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
        lead = kernel_lead(call) if call is not None else None
        if call is None or lead is None:
            continue
        out = args[len(call.inputs) + len(call.consts)]
        if out not in arena or first[out] != i:
            continue
        for name in dict.fromkeys(args[: len(call.inputs)]):
            if name in arena and last[name] == i:
                result.append(memory.Overlap(out, name, lead))
    return result
