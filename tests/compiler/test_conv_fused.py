"""The scratch-free conv (csrc/conv_rows_s8.c: divqat_conv_rows_s8) and the conv fused with its residual ADD
(divqat_conv_rows_add_s8, compiler/fuse.py) against the numpy reference of the unfused graph, bit for bit.

Shapes reach every tail and border: output channel counts that are odd or not a multiple of 4 (the last group
stores its real channels only), 16 to 48 input channels, 3x3 / 1x1 / 2x3 kernels, strides 1 and 2, symmetric,
asymmetric and 'valid' padding (windows clipped on every side: the padding terms), output widths odd and even (the
MVE path's pixel pairs and singles), the residual as the ADD's first or second input, an ADD with a ReLU clamp and
one with the full int8 range, input scales either side of the conv's (either stage of the ADD has the exact
shift). The fused op writes over the residual (the arena's exact overlap) wherever the residual dies there. The
host build runs the plain C path; the emulated Cortex-M7 and M4 (DSP), M55 (MVE) and M3 (plain C) the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler import fuse, inplace, memory, ops
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Add, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from compiler_models import conv_chain, out_hw, random_conv  # noqa: E402
from kernel_cores import KERNEL_BOARDS, needs_emulator  # noqa: E402

# name: (H, W, cin, cout, kernel, stride, padding t/l/b/r)
ROWS_CASES = {
    "3x3_pad1_c16_c16": (6, 7, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1)),
    "3x3_pad1_c16_c13": (5, 8, 16, 13, (3, 3), (1, 1), (1, 1, 1, 1)),
    "3x3_s2_same_c32_c7": (9, 8, 32, 7, (3, 3), (2, 2), (0, 0, 1, 1)),
    "2x3_asym_c16_c5": (6, 5, 16, 5, (2, 3), (1, 1), (1, 0, 0, 2)),
    "3x3_valid_c48_c20": (5, 6, 48, 20, (3, 3), (1, 1), (0, 0, 0, 0)),
    "1x1_s2_c32_c9": (7, 6, 32, 9, (1, 1), (2, 2), (0, 0, 0, 0)),
}

# name: (rows case of the fused conv, residual first in the ADD, ADD clamp, residual scale / conv output scale)
FUSED_CASES = {
    "c16_res_first_relu": ("3x3_pad1_c16_c16", True, "relu", 1.7),
    "c13_res_second_full": ("3x3_pad1_c16_c13", False, "full", 0.6),
    "c7_s2_res_first_full": ("3x3_s2_same_c32_c7", True, "full", 1.0),
    "c5_asym_res_second_relu": ("2x3_asym_c16_c5", False, "relu", 0.35),
    "c9_1x1_res_first_relu": ("1x1_s2_c32_c9", True, "relu", 2.9),
}


def rows_graph(case: str, rng: np.random.Generator) -> Graph:
    """x -> 1x1 conv -> t1 -> the case's conv -> t2 -> 1x1 conv -> y (t1, t2 in the arena)."""
    h, w, cin, cout, k, s, pad = ROWS_CASES[case]
    return conv_chain(h, w, cin, cout, k, s, pad, rng, y_channels=3)


def fused_graph(case: str, rng: np.random.Generator) -> Graph:
    """x -> 1x1 conv -> a; the rows case's conv on a 1x1 conv of a ... : r = conv(x) (the residual), u = conv(x)
    (the conv's input), v = the case's conv(u), s = ADD(r, v) or ADD(v, r), y = 1x1 conv(s)."""
    rows, res_first, clamp, ratio = FUSED_CASES[case]
    h, w, cin, cout, k, st, pad = ROWS_CASES[rows]
    oh, ow = out_hw(h, w, k, st, pad)
    s_v = 0.09
    zp_s = -20 if clamp == "relu" else 5
    t = {
        "x": QTensor("x", (1, h, w, 4), 0.05, 3, layout="NHWC"),
        "u": QTensor("u", (1, h, w, cin), 0.06, -5, layout="NHWC"),
        "r": QTensor("r", (1, oh, ow, cout), s_v * ratio, 11, layout="NHWC"),
        "v": QTensor("v", (1, oh, ow, cout), s_v, 4, layout="NHWC"),
        "s": QTensor("s", (1, oh, ow, cout), 0.14, zp_s, layout="NHWC"),
        "y": QTensor("y", (1, oh, ow, 3), 0.1, -2, layout="NHWC"),
    }
    lo = zp_s if clamp == "relu" else -128
    add = Add("add", ["r", "v"] if res_first else ["v", "r"], "s", act_min=lo, act_max=127)
    ops = [
        random_conv("cu", "x", "u", 4, cin, rng),
        random_conv("cr", "u", "r", cin, cout, rng, k, st, pad),  # the residual: the same geometry, so the same shape
        random_conv("cv", "u", "v", cin, cout, rng, k, st, pad),
        add,
        random_conv("cy", "s", "y", cout, 3, rng),
    ]
    return Graph(t, ops, "x", "y", layout="NHWC")


def _inputs(shape, n, rng) -> np.ndarray:
    x = rng.integers(-128, 128, (n, *shape)).astype(np.int8)
    x[0], x[1] = 127, -128
    return x


def _rows_overrides(graph: Graph, index: int) -> dict:
    call = ops.conv.rows_call(graph, graph.ops[index], "fixed")
    assert call is not None and call.scratch_bytes == 0
    return {index: call}


def _compile_fused(graph: Graph, out, **manifest) -> tuple[dict, Graph]:
    fused = fuse.residual_adds(graph, "fixed")
    assert [op.kind for op in fused.ops] == ["conv2d", "conv2d", "conv2d_add", "conv2d"]
    return generate(fused, out, requant="fixed", manifest=manifest or {"core": "cortex-m7"}), fused


# ---------------------------------------------------------------- offline layouts
def test_rows_weights_layout_matches_the_kernels_order() -> None:
    """int16 per 4-channel group, per 4 K values, per channel: (w0, w2, w1, w3) (SXTB16's halves)."""
    w2d = np.arange(5 * 8, dtype=np.int64).reshape(5, 8) - 20
    got = ops.conv.rows_weights(w2d.astype(np.int8)).reshape(2, 2, 4, 4)  # [group, quad, channel, 4]
    assert got[0, 1, 2].tolist() == [w2d[2, 4], w2d[2, 6], w2d[2, 5], w2d[2, 7]]
    assert got[1, 0, 0].tolist() == [w2d[4, 0], w2d[4, 2], w2d[4, 1], w2d[4, 3]]
    assert not got[1, :, 1:].any()  # channels 5..7 are zero rows


def test_rows_corrections_are_the_padding_terms() -> None:
    rng = np.random.default_rng(1)
    w2d = rng.integers(-127, 128, (6, 9 * 16)).astype(np.int8)
    corr = ops.conv.rows_corrections(w2d, 9, -7).reshape(2, 9, 4)
    assert corr[1, 4, 1] == -7 * int(w2d[5].astype(np.int64).reshape(9, 16)[4].sum())
    assert not corr[1, :, 2:].any()


def test_fused_add_tables_are_the_reference_stages() -> None:
    from divqat_tvm.compiler import requant as rq

    tc = QTensor("c", (1, 2, 2, 4), 0.09, 4, layout="NHWC")
    tr = QTensor("r", (1, 2, 2, 4), 0.153, 11, layout="NHWC")
    to = QTensor("o", (1, 2, 2, 4), 0.14, -20, layout="NHWC")
    words = ops.conv.fused_add_words(tc, tr, to, -20, 127)
    assert words is not None and len(words) == ops.conv.FUSED_ADD_WORDS
    m, sh = rq.quantize_multiplier(0.09 / (2 * 0.153))
    assert words[128 + 37] == rq.multiply_by_quantized_multiplier((37 - 4) << 20, m, sh)
    assert words[256 + 128 - 100] == (-100 - 11) << 19  # the larger scale: multiplier 0.5 exactly


def test_fused_add_refused_where_the_output_stage_is_not_exact() -> None:
    tc = QTensor("c", (1, 2, 2, 4), 0.09, 4, layout="NHWC")
    to = QTensor("o", (1, 2, 2, 4), 1e-8, 0, layout="NHWC")  # output multiplier > 1: a left shift
    assert ops.conv.fused_add_words(tc, tc, to, -128, 127) is None


# ---------------------------------------------------------------- host (plain C path)
@pytest.mark.slow
@pytest.mark.parametrize("case", list(ROWS_CASES))
def test_rows_conv_host_bit_exact(tmp_path, case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = rows_graph(case, rng)
    manifest = generate(
        graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"}, overrides=_rows_overrides(graph, 1)
    )
    assert manifest["ops"][1]["kernel"]["name"] == "divqat_conv_rows_s8"
    assert manifest["ops"][1]["scratch_bytes"] == 0
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    want = run_reference(graph, x, "fixed")
    assert int((HostModel(tmp_path / "m").run(x) != want).sum()) == 0
    assert len(np.unique(want)) > 3


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FUSED_CASES))
def test_fused_conv_add_host_bit_exact_in_place(tmp_path, case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = fused_graph(case, rng)
    manifest, fused = _compile_fused(graph, tmp_path / "m")
    op = manifest["ops"][2]
    assert op["kernel"]["name"] == "divqat_conv_rows_add_s8" and op["scratch_bytes"] == 0
    assert op["inplace"]["exact"] and op["inplace"]["shared_bytes"] == memory.align_up(fused.tensors["s"].nbytes)
    assert manifest["arena_bytes"] == manifest["arena_bound_bytes"]
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    want = run_reference(graph, x, "fixed")
    assert int((HostModel(tmp_path / "m").run(x) != want).sum()) == 0
    assert len(np.unique(want)) > 3


@pytest.mark.slow
def test_fused_conv_add_written_below_the_residual_is_caught(tmp_path, monkeypatch) -> None:
    """The runs above do check the in-place placement: the same fused op moved 16 bytes below the residual's
    address (where the planner would not put it) gives wrong answers. (On the host's C path that order alone would
    be safe, so what goes wrong may also be a neighbour's bytes; the MVE path writes pixel b's group before pixel
    a's next one, which is why the kernel's overlap is exact, inplace.py.)"""
    real = inplace.kernel_rules

    def shifted(call):
        rules = real(call)
        return [inplace.Rule(r.arg, 0, exact=False) for r in rules] if call.function.endswith("add_s8") else rules

    monkeypatch.setattr(inplace, "kernel_rules", shifted)
    real_pack = memory.pack

    def pack_below(ivs, overlaps=()):
        offsets, size = real_pack(ivs, overlaps)
        for o in overlaps:
            if offsets.get(o.out) == offsets.get(o.inp) and offsets[o.out] >= memory.ALIGN and o.lead == 0:
                offsets = {**offsets, o.out: offsets[o.out] - memory.ALIGN}
        return offsets, size

    monkeypatch.setattr(memory, "pack", pack_below)
    rng = np.random.default_rng(3)
    graph = fused_graph("c16_res_first_relu", rng)
    manifest, _ = _compile_fused(graph, tmp_path / "m")
    assert manifest["ops"][2]["inplace"]["shared_bytes"] > 0
    x = _inputs(graph.input_tensor.shape[1:], 20, rng)
    assert int((HostModel(tmp_path / "m").run(x) != run_reference(graph, x, "fixed")).sum()) > 0


@pytest.mark.slow
def test_fused_conv_add_te_kernel_bit_exact(tmp_path) -> None:
    """--tune's "te" candidate of a fused op: the conv's and the ADD's TE stages in one scheduled kernel."""
    rng = np.random.default_rng(5)
    graph = fused_graph("c13_res_second_full", rng)
    fused = fuse.residual_adds(graph, "fixed")
    manifest = generate(fused, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"}, overrides={2: None})
    assert manifest["ops"][2]["kernel"]["name"] == "tvm"
    x = _inputs(graph.input_tensor.shape[1:], 20, rng)
    assert int((HostModel(tmp_path / "m").run(x) != run_reference(graph, x, "fixed")).sum()) == 0


def test_only_fusions_that_lower_the_peak_are_made() -> None:
    """ResNet's first block shape: fusing lowers the peak (x, a and the conv's output were alive together); a
    graph whose peak is elsewhere keeps its ADD (the separate kernels are faster)."""
    rng = np.random.default_rng(0)
    graph = fused_graph("c16_res_first_relu", rng)
    assert [op.kind for op in fuse.where_it_lowers_the_peak(graph, "fixed").ops][2] == "conv2d_add"
    wide = fused_graph("c16_res_first_relu", rng)
    wide.tensors["y"] = QTensor("y", (1, 6, 7, 3), 0.1, -2, layout="NHWC")
    wide.tensors["big"] = QTensor("big", (1, 6, 7, 256), 0.1, 0, layout="NHWC")
    wide.ops.insert(0, random_conv("cb", "x", "big", 4, 256, rng))
    wide.ops[1] = random_conv("cu", "big", "u", 256, 16, rng)  # the peak is now at cu (big + u)
    assert "conv2d_add" not in [op.kind for op in fuse.where_it_lowers_the_peak(wide, "fixed").ops]


def test_an_add_of_the_convs_own_input_is_not_fused() -> None:
    """ADD(u, conv(u)): the output over the residual would be over the conv's input, which it still reads."""
    rng = np.random.default_rng(4)
    graph = fused_graph("c16_res_first_relu", rng)
    graph.ops[1] = random_conv("cr", "x", "r", 4, 16, rng)  # unused now: r replaced by u below
    graph.ops = [graph.ops[0], graph.ops[2], Add("add", ["u", "v"], "s", act_min=-20, act_max=127), graph.ops[4]]
    graph.tensors["u"] = QTensor("u", graph.tensors["v"].shape, 0.06, -5, layout="NHWC")
    assert [op.kind for op in fuse.residual_adds(graph, "fixed").ops] == ["conv2d", "conv2d", "add", "conv2d"]


def test_the_scratch_free_conv_is_a_tuning_candidate() -> None:
    """`--tune` measures it beside the im2col kernel (compiler/tune.py) where it applies, and never elsewhere."""

    rng = np.random.default_rng(2)
    graph = rows_graph("3x3_pad1_c16_c13", rng)
    assert list(ops.candidates(graph, graph.ops[1], "fixed")) == ["native", "native-rows", "te"]
    assert "native-rows" not in ops.candidates(graph, graph.ops[0], "fixed")  # 4 input channels
    fused = fuse.residual_adds(fused_graph("c16_res_first_relu", rng), "fixed")
    assert list(ops.candidates(fused, fused.ops[2], "fixed")) == ["native", "te"]


# ---------------------------------------------------------------- every path on its core
@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
@pytest.mark.parametrize("board,core", KERNEL_BOARDS)
def test_rows_and_fused_bit_exact_under_qemu(tmp_path, board: str, core: str) -> None:
    from divqat_tvm.oracle.backend_device import QemuOracle

    info = {"core": core, "target": board, "meta": {}}
    cases = [(c, "rows") for c in ROWS_CASES] + [(c, "fused") for c in FUSED_CASES]
    for case, kind in cases:
        rng = np.random.default_rng(sum(map(ord, case + board)))
        out = tmp_path / case
        if kind == "rows":
            graph = rows_graph(case, rng)
            generate(graph, out, requant="fixed", manifest={**info, "name": case}, overrides=_rows_overrides(graph, 1))
        else:
            graph = fused_graph(case, rng)
            manifest, _ = _compile_fused(graph, out, **info, name=case)
            assert manifest["ops"][2]["inplace"]["shared_bytes"] > 0
        x = _inputs(graph.input_tensor.shape[1:], 6, rng)
        with QemuOracle(out, board=board, transfer="shared", instances=1) as dev:
            got = np.stack([r.logits for r in dev.run_int8(x.reshape(len(x), -1))])
        want = run_reference(graph, x, "fixed").reshape(len(x), -1)
        assert int((got != want).sum()) == 0, case
