"""Outputs written over dying inputs (compiler/inplace.py) and the arena packing that uses them (memory.py).

The leads are checked three ways: against a byte-level simulation of the conv kernel's order of reads and
writes (every window byte, not the closed form), by running chained layers whose arena the planner overlaps as
tightly as the leads allow, bit-exact with the numpy reference on the host and on every emulated core, and by
showing that a lead one step too small does corrupt the output (so those runs would catch a wrong lead).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler import inplace, memory
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Add, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.native import DESC_FIELDS
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from compiler_models import conv_chain, random_conv  # noqa: E402
from kernel_cores import KERNEL_BOARDS, needs_emulator  # noqa: E402


def test_overlap_rules_match_the_kernel_sources() -> None:
    """A kernel whose C changed gets no overlap until its order of reads and writes is checked again: read the
    kernel, re-derive its lead (inplace.py's docstring), run this file's QEMU tests, then update VERIFIED."""
    for function, (file, digest) in inplace.VERIFIED.items():
        assert inplace.source_digest(file) == digest, f"{file} changed: re-verify {function}'s overlap rule"


def test_a_changed_kernel_gets_no_overlap(monkeypatch) -> None:
    graph = chain_graph("3x3_pad1_c16", np.random.default_rng(0))
    from divqat_tvm.compiler import ops

    call = ops.native_call(graph, graph.ops[1], "fixed")
    assert inplace.kernel_lead(call) == 16 * (8 + 1 + 4)
    monkeypatch.setitem(inplace.VERIFIED, "divqat_conv_s8", ("conv_s8.c", "0" * 16))
    assert inplace.kernel_lead(call) is None


# ---------------------------------------------------------------- memory.pack with overlaps
def _valid(offsets: dict[str, int], ivs: list[memory.Interval], overlaps: list[memory.Overlap]) -> bool:
    """Every two tensors alive at one call are disjoint, or an allowed overlap with the output lead bytes (or
    more) below the input, or an exact one at the input's own offset."""
    lead = {(o.out, o.inp): memory.align_up(o.lead) for o in overlaps if not o.exact}
    exact = {(o.out, o.inp) for o in overlaps if o.exact}
    for i, a in enumerate(ivs):
        for b in ivs[i + 1 :]:
            if not a.overlaps(b):
                continue
            oa, ob = offsets[a.name], offsets[b.name]
            if oa + memory.align_up(a.nbytes) <= ob or ob + memory.align_up(b.nbytes) <= oa:
                continue
            if oa == ob and ((a.name, b.name) in exact or (b.name, a.name) in exact):
                continue
            if (a.name, b.name) in lead and oa <= ob - lead[(a.name, b.name)]:
                continue
            if (b.name, a.name) in lead and ob <= oa - lead[(b.name, a.name)]:
                continue
            return False
    return True


def test_residual_block_packs_to_its_bound() -> None:
    """ResNet-8's first block: x, conv1(x) (over nothing: x lives on), conv2 over conv1's output, add over it."""
    ivs = [
        memory.Interval("x", 16384, 0, 3),
        memory.Interval("c1", 16384, 1, 2),
        memory.Interval("s1", 1296, 1, 1),
        memory.Interval("c2", 16384, 2, 3),
        memory.Interval("s2", 1296, 2, 2),
        memory.Interval("sum", 16384, 3, 4),
    ]
    ovl = [memory.Overlap("c2", "c1", 592), memory.Overlap("sum", "x", 0), memory.Overlap("sum", "c2", 0)]
    offsets, size = memory.pack(ivs, ovl)
    assert _valid(offsets, ivs, ovl)
    assert size == memory.peak_live_bytes(ivs, ovl) == 3 * 16384 + 1296 - (16384 - 592)
    assert memory.pack(ivs)[1] == memory.peak_live_bytes(ivs) == 3 * 16384 + 1296  # no overlaps: 50,448


def test_fused_residual_block_packs_to_two_activations() -> None:
    """ResNet-8's first block with the second conv fused with its ADD (no scratch: the scratch-free conv): x and
    conv1(x) alive, the fused op's output exactly over x; then the next block's conv over the sum with a lead. The
    chain (x, sum, next) must not sit at offset 0 (it needs room below it): the peak-first orders find that."""
    ivs = [
        memory.Interval("x", 16384, 0, 2),
        memory.Interval("c1", 16384, 1, 2),
        memory.Interval("sum", 16384, 2, 4),
        memory.Interval("d", 8192, 3, 4),
        memory.Interval("s3", 1296, 3, 3),
        memory.Interval("e", 8192, 4, 5),
        memory.Interval("s4", 144, 4, 4),
    ]
    ovl = [memory.Overlap("sum", "x", 0, exact=True), memory.Overlap("e", "sum", 128)]
    offsets, size = memory.pack(ivs, ovl)
    assert _valid(offsets, ivs, ovl) and offsets["sum"] == offsets["x"]
    assert size == memory.peak_live_bytes(ivs, ovl) == 2 * 16384


def test_an_exact_overlap_is_only_at_the_inputs_address() -> None:
    """Without the chain an exact pair is kept apart (the greedy places ranges, not single offsets)."""
    ivs = [memory.Interval("a", 4096, 0, 1), memory.Interval("b", 4096, 1, 2)]
    ovl = [memory.Overlap("b", "a", 0, exact=True)]
    offsets, size = memory.pack(ivs, ovl)
    assert offsets["a"] == offsets["b"] and size == 4096 and _valid(offsets, ivs, ovl)
    assert not _valid({"a": 16, "b": 0}, ivs, ovl)  # lower is not allowed for an exact overlap


def test_overlaps_chained_only_where_needed_reach_the_bound() -> None:
    """Our ResNet-8 export at 16x16 (NHWC inside): chaining every overlap drifts the first block's tensors down
    by the shortcut conv's lead and misses the bound by 128 B; chaining only the overlaps the peak needs does not."""
    sizes = [768, 4096, 288, 4096, 1296, 4096, 1296, 4096, 2048, 1296, 2048, 2592, 2048, 144, 2048, 1024, 2592]
    sizes += [1024, 5184, 1024, 288, 1024, 64, 64, 576]
    spans = [(0, 1), (1, 4), (1, 1), (2, 3), (2, 2), (3, 4), (3, 3), (4, 7), (5, 6), (5, 5), (6, 8), (6, 6), (7, 8)]
    spans += [(7, 7), (8, 11), (9, 10), (9, 9), (10, 12), (10, 10), (11, 12), (11, 11), (12, 13), (13, 14)]
    spans += [(14, 15), (15, 15)]
    ivs = [memory.Interval(f"a{i}", n, *sp) for i, (n, sp) in enumerate(zip(sizes, spans))]
    pairs = [(1, 0, 3392), (5, 3, 336), (7, 1, 0), (7, 5, 0), (10, 8, 416), (12, 7, 128), (14, 12, 0), (14, 10, 0)]
    pairs += [(17, 15, 512), (19, 14, 256), (21, 19, 0), (21, 17, 0)]
    ovl = [memory.Overlap(f"a{o}", f"a{i}", lead) for o, i, lead in pairs]
    offsets, size = memory.pack(ivs, ovl)
    assert _valid(offsets, ivs, ovl)
    assert size == memory.peak_live_bytes(ivs, ovl) == 4096 + 4096 + 336 + 1296


def test_overlap_needs_the_input_to_die_at_that_call() -> None:
    ivs = [memory.Interval("a", 4096, 0, 2), memory.Interval("b", 4096, 1, 2)]
    ovl = [memory.Overlap("b", "a", 0)]  # a is still read after b is written: not an overlap
    offsets, size = memory.pack(ivs, ovl)
    assert size == 8192 and memory.peak_live_bytes(ivs, ovl) == 8192 and _valid(offsets, ivs, [])


@pytest.mark.parametrize("seed", range(6))
def test_random_chains_pack_validly_and_never_below_the_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ivs, ovl = [], []
    for i in range(25):
        n = int(rng.integers(1, 6000))
        ivs.append(memory.Interval(f"t{i}", n, i, i + int(rng.integers(1, 4))))
        dying = [p for p in ivs[:-1] if p.last == i]
        if dying and rng.random() < 0.7:
            ovl.append(memory.Overlap(f"t{i}", dying[0].name, int(rng.integers(0, 3000))))
    offsets, size = memory.pack(ivs, ovl)
    assert all(o % memory.ALIGN == 0 for o in offsets.values())
    assert _valid(offsets, ivs, ovl)
    assert size >= memory.peak_live_bytes(ivs, ovl)
    assert size <= memory.pack(ivs)[1]  # overlaps never make it worse (the plain packing is among the tries)


# ---------------------------------------------------------------- conv leads against a simulation
def _desc(ih, iw, cin, cout, k, s, pad, dil) -> np.ndarray:
    oh = (ih + pad[0] + pad[2] - dil[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (iw + pad[1] + pad[3] - dil[1] * (k[1] - 1) - 1) // s[1] + 1
    g = dict(ih=ih, iw=iw, cin=cin, oh=oh, ow=ow, cout=cout, kh=k[0], kw=k[1], sh=s[0], sw=s[1], dh=dil[0], dw=dil[1])
    g.update(pt=pad[0], pl=pad[1], zp_in=0, zp_out=0, lo=-128, hi=127, k=0, kp=0, flags=0)
    return np.array([g[f] for f in DESC_FIELDS], np.int32)


def _clobbers(desc: np.ndarray, lead: int, block: int) -> bool:
    """Byte-level run of the conv's order: the output at 0, the input at `lead`; blocks of `block` pixels in
    row-major order, each block's writes possibly before its own last read. True if a write hits an input
    byte that the same or a later block still reads."""
    g = {f: int(desc[i]) for i, f in enumerate(DESC_FIELDS)}
    npix = g["oh"] * g["ow"]
    reads_of = []
    for p in range(npix):
        oy, ox = divmod(p, g["ow"])
        r = set()
        for ky in range(g["kh"]):
            iy = oy * g["sh"] - g["pt"] + ky * g["dh"]
            for kx in range(g["kw"]):
                ix = ox * g["sw"] - g["pl"] + kx * g["dw"]
                if 0 <= iy < g["ih"] and 0 <= ix < g["iw"]:
                    base = lead + (iy * g["iw"] + ix) * g["cin"]
                    r.update(range(base, base + g["cin"]))
        reads_of.append(r)
    written: set[int] = set()
    for b in range(0, npix, block):
        written.update(range(b * g["cout"], min(b + block, npix) * g["cout"]))
        if any(written & reads_of[p] for p in range(b, min(b + block, npix))):
            return True
    return False


LEAD_CASES = {
    "3x3_pad1_c16": ((9, 8, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)), 16 * (8 + 1 + 4)),
    "1x1_s2_c16_c32": ((8, 8, 16, 32, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)), 128),
    "3x3_s2_same_c8_c12": ((9, 9, 8, 12, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)), None),
    "5x3_asym_dil21_c4_c3": ((9, 7, 4, 3, (5, 3), (2, 1), (3, 0, 1, 2), (2, 1)), None),
    "1x1_c16_c4": ((6, 6, 16, 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)), 16),
    "3x3_valid_c5_c40": ((7, 6, 5, 40, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)), None),
    "resnet8_conv_2d_2": ((32, 32, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)), 592),
}


@pytest.mark.parametrize("case", list(LEAD_CASES))
def test_conv_lead_is_the_smallest_safe_one(case: str) -> None:
    geom, expected = LEAD_CASES[case]
    desc = _desc(*geom)
    lead = inplace.conv_lead(desc)
    if expected is not None:
        assert lead == expected
    assert not _clobbers(desc, lead, inplace.CONV_PIXEL_BLOCK)
    assert lead == 0 or _clobbers(desc, lead - memory.ALIGN, inplace.CONV_PIXEL_BLOCK)


# ---------------------------------------------------------------- chained layers, really overlapped


# name: (H, W, cin, cout, kernel, stride, padding, dilation) of the middle conv, written over its input
CHAIN_CASES = {
    "3x3_pad1_c16": (9, 8, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "3x3_s2_same_c8_c12": (9, 9, 8, 12, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)),
    "1x1_direct_c8_c12": (6, 7, 8, 12, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    "1x1_direct_s2_c16_c4": (7, 8, 16, 4, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    "3x3_bytes_c5_c7": (6, 9, 5, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "5x3_asym_dil21_c8_c3": (9, 7, 8, 3, (5, 3), (2, 1), (3, 0, 1, 2), (2, 1)),
}


def chain_graph(case: str, rng: np.random.Generator) -> Graph:
    """x -> 1x1 conv -> t1 -> the case's conv -> t2 -> 1x1 conv -> y: t1 dies at the middle conv, whose output
    the planner lays over it (t1 and t2 are the arena's only activations)."""
    h, w, cin, cout, k, s, pad, dil = CHAIN_CASES[case]
    return conv_chain(h, w, cin, cout, k, s, pad, rng, dil)


def residual_graph(rng: np.random.Generator) -> Graph:
    """x -> conv -> a; conv(a) -> b (over nothing: a lives on); conv(b) -> c (over b); add(a, c) -> s (over a
    or c); conv(s) -> y: ResNet's block, small."""
    t = {
        "x": QTensor("x", (1, 6, 7, 4), 0.05, 3, layout="NHWC"),
        "a": QTensor("a", (1, 6, 7, 12), 0.06, -5, layout="NHWC"),
        "b": QTensor("b", (1, 6, 7, 12), 0.07, 2, layout="NHWC"),
        "c": QTensor("c", (1, 6, 7, 12), 0.05, -1, layout="NHWC"),
        "s": QTensor("s", (1, 6, 7, 12), 0.1, -20, layout="NHWC"),
        "y": QTensor("y", (1, 6, 7, 4), 0.1, 0, layout="NHWC"),
    }
    pad = (1, 1, 1, 1)
    ops = [
        random_conv("c1", "x", "a", 4, 12, rng),
        random_conv("c2", "a", "b", 12, 12, rng, (3, 3), pad=pad),
        random_conv("c3", "b", "c", 12, 12, rng, (3, 3), pad=pad),
        Add("add", ["a", "c"], "s", act_min=-20, act_max=127),
        random_conv("c4", "s", "y", 12, 4, rng),
    ]
    return Graph(t, ops, "x", "y", layout="NHWC")


GRAPHS = {**{c: (lambda rng, c=c: chain_graph(c, rng)) for c in CHAIN_CASES}, "residual": residual_graph}


def _inputs(shape, n, rng) -> np.ndarray:
    x = rng.integers(-128, 128, (n, *shape)).astype(np.int8)
    x[0], x[1] = 127, -128
    return x


def _check_overlapped(manifest: dict, graph: Graph) -> None:
    """The arena is the bound and every overlapped op shares as many bytes as its lead allows (the tightest)."""
    assert manifest["arena_bytes"] == manifest["arena_bound_bytes"]
    used = [o for o in manifest["ops"] if o.get("inplace", {}).get("shared_bytes")]
    assert used, "no layer was written over its input"
    for o in used:
        op = graph.ops[o["index"]]
        out_b = memory.align_up(graph.tensors[op.output].nbytes)
        in_b = max(memory.align_up(graph.tensors[op.inputs[i]].nbytes) for i in o["inplace"]["inputs"])
        assert o["inplace"]["shared_bytes"] == min(out_b - o["inplace"]["lead_bytes"], in_b)


#: chain cases whose middle conv the scratch-free kernel takes (input channels a multiple of 16)
ROWS_CHAINS = ["3x3_pad1_c16"]


def _overrides(case: str, graph: Graph, kernel: str) -> dict:
    """The middle conv's kernel: "gemm" (divqat_conv_s8 with its scratch) or "rows" (divqat_conv_rows_s8)."""
    from divqat_tvm.compiler import ops

    if kernel == "rows":
        return {1: ops.conv.rows_call(graph, graph.ops[1], "fixed")}
    if case in GRAPHS and case != "residual":
        return {1: ops.conv.conv_call(graph, graph.ops[1], "fixed")}
    return {}


KERNEL_CASES = [(c, "gemm") for c in GRAPHS] + [(c, "rows") for c in ROWS_CHAINS]


@pytest.mark.slow
@pytest.mark.parametrize("case,kernel", KERNEL_CASES)
def test_overlapped_layers_host_bit_exact(tmp_path, case: str, kernel: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = GRAPHS[case](rng)
    manifest = generate(
        graph,
        tmp_path / "m",
        requant="fixed",
        manifest={"core": "cortex-m7"},
        overrides=_overrides(case, graph, kernel),
    )
    assert kernel == "gemm" or manifest["ops"][1]["kernel"]["name"] == "divqat_conv_rows_s8"
    _check_overlapped(manifest, graph)
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    want = run_reference(graph, x, "fixed")
    assert int((HostModel(tmp_path / "m").run(x) != want).sum()) == 0
    assert len(np.unique(want)) > 3


@pytest.mark.slow
@pytest.mark.parametrize("case", ["3x3_pad1_c16", "residual"])
def test_a_conv_written_in_place_without_its_lead_is_caught(tmp_path, monkeypatch, case: str) -> None:
    """With the conv leads set to 0 (output at its input's address) the same runs go wrong: the exactness tests
    above do exercise the overlaps. (The leads are conservative for the plain C path the host runs, which reads
    a pixel's window before writing it, so a lead a little short would still pass there.)"""
    real = inplace.kernel_rules
    monkeypatch.setattr(inplace, "kernel_rules", lambda call: [inplace.Rule(r.arg, 0, r.exact) for r in real(call)])
    monkeypatch.setattr(inplace, "scratch_free", lambda *a, **k: {})
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = GRAPHS[case](rng)
    generate(graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"})
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert any(o.get("inplace", {}).get("shared_bytes") for o in manifest["ops"])
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    assert int((HostModel(tmp_path / "m").run(x) != run_reference(graph, x, "fixed")).sum()) > 0


@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
@pytest.mark.parametrize("board,core", KERNEL_BOARDS)
def test_overlapped_layers_bit_exact_under_qemu(tmp_path, board: str, core: str) -> None:
    """The DSP (M7, M4), MVE (M55) and plain C (M3) paths of the kernels (the im2col GEMM conv, the scratch-free
    conv, the add), written over their inputs."""
    from divqat_tvm.oracle.backend_device import QemuOracle

    for case, kernel in KERNEL_CASES:
        rng = np.random.default_rng(sum(map(ord, case + board)))
        graph = GRAPHS[case](rng)
        out = tmp_path / f"{case}-{kernel}"
        manifest = generate(
            graph,
            out,
            requant="fixed",
            manifest={"core": core, "target": board, "name": case, "meta": {}},
            overrides=_overrides(case, graph, kernel),
        )
        _check_overlapped(manifest, graph)
        x = _inputs(graph.input_tensor.shape[1:], 6, rng)
        with QemuOracle(out, board=board, transfer="shared", instances=1) as dev:
            got = np.stack([r.logits for r in dev.run_int8(x.reshape(len(x), -1))])
        want = run_reference(graph, x, "fixed").reshape(len(x), -1)
        assert int((got != want).sum()) == 0, case
