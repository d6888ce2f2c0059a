"""The hand-written C kernels (divqat_tvm/compiler/csrc, chosen by compiler/ops/) against the numpy reference
(reference.run_reference: zero points subtracted inside the sums, padding as a real zero), bit for bit.

Shapes are picked to reach every tail: output channel counts that are odd or not a multiple of 4 (the DSP
block is 1 channel x 4 pixels, the MVE one 4 channels x 1 pixel, both finish by duplication), pixel counts
not a multiple of 4, K not a multiple of 4, 8 or 16 (zero-padded weight rows, the MVE predicated tail),
inputs whose channel count is not a multiple of 4 (byte im2col), 1x1 layers read in place (DQ_DIRECT),
stride, dilation, asymmetric padding, and both epilogues (fast: SMMULR / VQRDMULH; exact: left shifts,
shift 0, a clamp narrower than int8). Depthwise: the tap-pair path (3x3, fast epilogue) with odd channel counts
and every split of a row into blocks of 1 to 6 pixels, strides 1 and 2, 'same' and 'valid' padding, rows widened
two words at a time with and without an odd word left; the whole-plane path for small stride-2 planes (2, 3 and 4
pixels a row, odd channel counts, the bottom pad row or none, an odd word count), 5x5 / 7x7 / 'valid' 6x6 inputs at
stride 2 on the ring; the channel-group ring for the other shapes. On the M55 (QEMU) every tap-pair layer runs the Helium kernel
(odd channel counts, every block split, both strides, one-pixel rows, the plane shapes too). One-pixel layers (the fully connected kernels) and K = 8 (the pointwise channel loop). TFLite's
FULLY_CONNECTED rounding as a proven fixed point: exhaustively over AD01's accumulators. The host build runs the
plain C path; the emulated Cortex-M7 and M4 (DSP), M55 (MVE) and M3 (plain C on a core) run the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Conv2D, Dense, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from compiler_models import out_hw  # noqa: E402
from kernel_cores import KERNEL_PATHS, needs_emulator  # noqa: E402

# name: (H, W, cin, cout, kernel, stride, padding t/l/b/r, dilation, requant kind)
#   requant kind: "fast" (shifts 1..22, full clamp), "relu6" (narrow clamp), "shift0" (real multiplier in
#   [0.5, 1): no right shift), "left" (real multiplier > 1: a saturating left shift)
CONV_CASES = {
    "3x3_pad1_cin3_cout5": (7, 9, 3, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_same_cin16_cout7": (9, 8, 16, 7, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_cin16_cout16_relu6": (6, 7, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "relu6"),
    "5x3_asym_dil21_cin8_cout3": (9, 7, 8, 3, (5, 3), (2, 1), (3, 0, 1, 2), (2, 1), "fast"),
    "1x1_direct_cin8_cout9": (5, 5, 8, 9, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "1x1_s2_direct_cin12_cout1": (7, 6, 12, 1, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), "fast"),
    "1x1_cin6_bytes_cout4": (4, 5, 6, 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "1x1_cin20_k_tail16_cout6": (3, 5, 20, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "3x3_cin4_shift0": (5, 6, 4, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "shift0"),
    "2x2_cin1_left_shift": (6, 6, 1, 2, (2, 2), (1, 1), (0, 0, 1, 1), (1, 1), "left"),
    "3x3_valid_cin32_cout12": (6, 6, 32, 12, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    # one output pixel (the fully connected kernels): K with a half chunk, channels not a multiple of 4
    "1x1_pix1_cin20_cout7": (1, 1, 20, 7, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "3x3_pix1_cin5_cout6_pad1": (1, 1, 5, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "1x1_pix1_cin36_cout5_relu6": (1, 1, 36, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "relu6"),
}

# name: (H, W, C, kernel, stride, padding t/l/b/r, dilation, requant kind): depthwise, depth multiplier 1
DW_CASES = {
    "3x3_s1_same_c4_w5": (5, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_same_c8_w7": (7, 7, 8, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_same_c12_w8": (8, 8, 12, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_valid_c16_w6": (6, 6, 16, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "3x3_s1_c8_relu6": (6, 7, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "relu6"),
    "3x3_s1_c4_shift0": (4, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "shift0"),
    "5x5_s1_c8": (7, 6, 8, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), "fast"),
    "3x1_s1_c4_tall": (9, 4, 4, (3, 1), (1, 1), (1, 0, 1, 0), (1, 1), "fast"),
    "3x3_dil2_c8": (8, 8, 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), "fast"),
    "3x3_s1_w1_c4": (5, 1, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    # the tap-pair path (3x3, dilation 1, fast epilogue): odd channel counts, every last-block width (ow % 4)
    "3x3_s1_c5_w6": (4, 6, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s1_c13_w7": (5, 7, 13, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c7_w9_pad1": (9, 9, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c3_w10_valid": (6, 10, 3, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), "fast"),
    "3x3_s1_c9_w2_valid": (5, 4, 9, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), "fast"),
    "3x3_s21_c6_w8": (9, 8, 6, (3, 3), (2, 1), (0, 1, 1, 1), (1, 1), "fast"),
    # every split of a row into blocks (6, 6 + 6, 4 + 3, 4 + 4, 6 + 5, 6 + 4 + 3) for both strides; rows widened
    # two words at a time with an odd word left, a left border at stride 2; no full channel group (c = 3)
    "3x3_s1_c7_w13": (4, 13, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s1_c6_w12": (3, 12, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s1_c3_w8": (3, 8, 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c10_w12_same": (5, 12, 10, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_c5_w15_same": (4, 15, 5, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_c9_w22_pad1": (5, 22, 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c4_w26_same": (3, 26, 4, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_c8_w16_same": (3, 16, 8, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    # the whole-plane path (stride 2, no top/left pad, iw = 2 ow, 2-4 pixels a row): VWW's 6x6 -> 3x3 with odd
    # channel counts (a tail past the last group of 4, no full group), 2 and 4 pixels a row, taller planes, an odd
    # word count (7 x 6: 21 words a channel) with no bottom pad row; 5x5, 7x7 and 'valid' 6x6 stay on the ring
    "3x3_s2_plane_c7_w6": (6, 6, 7, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_plane_c3_w6": (6, 6, 3, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_plane_c16_w4": (4, 4, 16, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_plane_c13_w8": (6, 8, 13, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_plane_c12_h8_w6": (8, 6, 12, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s2_plane_c8_h7_odd_words": (7, 6, 8, (3, 3), (2, 2), (0, 0, 0, 1), (1, 1), "fast"),
    # the Helium kernel (M55, rows of 4 or more pixels): blocks of 5 then 1-4 at both strides, no full group of 4
    # channels (c = 2), a tail group of 1-3 channels, stride 2 down only
    "3x3_s2_c2_w18_same": (5, 18, 2, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), "fast"),
    "3x3_s21_c22_w10": (7, 10, 22, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c9_w5_same": (5, 5, 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "fast"),
    "3x3_s2_c6_w6_valid": (6, 6, 6, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), "fast"),
}

# name: (shape, s_a, s_b, s_out, zp_a, zp_b, zp_out, act_min, act_max)
ADD_CASES = {
    "a_larger_full": ((1, 5, 7, 8), 0.08, 0.05, 0.1, -3, 11, -128, -128, 127),
    "b_larger_relu": ((1, 4, 4, 12), 0.02, 0.07, 0.06, 20, -128, -20, -20, 127),
    "equal_scales": ((1, 3, 5, 4), 0.05, 0.05, 0.09, 0, -5, 3, -128, 127),
    "out_shift23_exact": ((1, 7), 0.5, 0.4, 9.0, 1, 2, 0, -128, 127),
    "odd_count_narrow": ((1, 3, 3, 3), 0.03, 0.011, 0.02, -128, 7, -9, -60, 90),
}

QEMU_CASES = [
    "1x1_cin6_bytes_cout4",  # K 6 -> KP 8: the K = 8 channel loop (DSP)
    "1x1_pix1_cin20_cout7",  # one pixel: the fully connected kernels
    "3x3_pix1_cin5_cout6_pad1",
    "1x1_pix1_cin36_cout5_relu6",
    "3x3_pad1_cin3_cout5",
    "3x3_s2_same_cin16_cout7",
    "1x1_direct_cin8_cout9",
    "1x1_cin20_k_tail16_cout6",
    "3x3_cin4_shift0",
    "2x2_cin1_left_shift",
    "3x3_cin16_cout16_relu6",
]


def _qparams(kind: str, cout: int, s_in: float, rng: np.random.Generator) -> tuple[np.ndarray, float, int, int, int]:
    """(weight scales, output scale, output zero point, act_min, act_max) giving the requested epilogue."""
    s_w = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    s_out, zp_out, lo, hi = 0.11, -3, -128, 127
    if kind == "relu6":
        zp_out, lo, hi = -100, -100, 90
    elif kind == "shift0":  # real = s_in·s_w/s_out in [0.5, 1)
        s_w = rng.uniform(0.5, 0.95, cout).astype(np.float32)
        s_out = s_in
    elif kind == "left":  # real in (1, 4)
        s_w = rng.uniform(1.2, 3.5, cout).astype(np.float32)
        s_out = s_in * 0.9
    return s_w, s_out, zp_out, lo, hi


def conv_graph(case: str, rng: np.random.Generator) -> Graph:
    h, w, cin, cout, kernel, stride, pad, dil, kind = CONV_CASES[case]
    oh, ow = out_hw(h, w, kernel, stride, pad, dil)
    s_in = 0.05
    s_w, s_out, zp_out, lo, hi = _qparams(kind, cout, s_in, rng)
    x = QTensor("x", (1, h, w, cin), s_in, 7, layout="NHWC")
    y = QTensor("y", (1, oh, ow, cout), s_out, zp_out, layout="NHWC")
    wt = rng.integers(-127, 128, (cout, cin, *kernel)).astype(np.int8)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    if kind == "left":  # small accumulators, so a left shift does not saturate everything
        wt = rng.integers(-3, 4, (cout, cin, *kernel)).astype(np.int8)
        bias = rng.integers(-20, 20, cout).astype(np.int32)
    op = Conv2D(
        "conv",
        ["x"],
        "y",
        weight=wt,
        weight_scale=s_w,
        bias=bias,
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=1,
        act_min=lo,
        act_max=hi,
    )
    return Graph({"x": x, "y": y}, [op], "x", "y", layout="NHWC")


def dw_graph(case: str, rng: np.random.Generator) -> Graph:
    h, w, c, kernel, stride, pad, dil, kind = DW_CASES[case]
    oh, ow = out_hw(h, w, kernel, stride, pad, dil)
    s_in = 0.05
    s_w, s_out, zp_out, lo, hi = _qparams(kind, c, s_in, rng)
    x = QTensor("x", (1, h, w, c), s_in, -9, layout="NHWC")
    y = QTensor("y", (1, oh, ow, c), s_out, zp_out, layout="NHWC")
    op = Conv2D(
        "dw",
        ["x"],
        "y",
        weight=rng.integers(-127, 128, (c, 1, *kernel)).astype(np.int8),
        weight_scale=s_w,
        bias=rng.integers(-3000, 3000, c).astype(np.int32),
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=c,
        act_min=lo,
        act_max=hi,
    )
    return Graph({"x": x, "y": y}, [op], "x", "y", layout="NHWC")


def add_graph(case: str, rng: np.random.Generator) -> Graph:
    """x (scale s_a) and a 1x1 conv (or FC) of x (scale s_b) added: two differently quantized inputs."""
    from divqat_tvm.compiler.graph import Add

    shape, sa, sb, so, za, zb, zo, lo, hi = ADD_CASES[case]
    layout = "NHWC" if len(shape) == 4 else "NC"
    c = shape[-1]
    t = {
        "a": QTensor("a", shape, sa, za, layout=layout),
        "b": QTensor("b", shape, sb, zb, layout=layout),
        "y": QTensor("y", shape, so, zo, layout=layout),
    }
    w = rng.integers(-127, 128, (c, c)).astype(np.int8)
    ws = np.full(c, sb * 40.0 / (sa * 127 * c), np.float32)  # b spans a good part of its int8 range
    bias = rng.integers(-300, 300, c).astype(np.int32)
    if layout == "NHWC":
        mk = Conv2D("mk", ["a"], "b", weight=w.reshape(c, c, 1, 1), weight_scale=ws, bias=bias)
    else:
        mk = Dense("mk", ["a"], "b", weight=w, weight_scale=ws, bias=bias)
    return Graph(t, [mk, Add("add", ["a", "b"], "y", act_min=lo, act_max=hi)], "a", "y", layout=layout)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ADD_CASES))
def test_native_add_host_bit_exact(tmp_path, case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = add_graph(case, rng)
    manifest = generate(graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"})
    kern = manifest["ops"][1]["kernel"]
    assert kern["name"] == "divqat_add_s8"
    assert kern["variant"]["epilogue"] == ("exact" if case == "out_shift23_exact" else "fast")
    x = _inputs(graph.input_tensor.shape[1:], 60, rng)
    got = HostModel(tmp_path / "m").run(x)
    want = run_reference(graph, x, "fixed")
    assert got.shape == want.shape and int((got != want).sum()) == 0
    assert len(np.unique(want)) > 3


def dense_graph(k: int, n_out: int, rng: np.random.Generator) -> Graph:
    x = QTensor("x", (1, k), 0.04, 5, layout="NC")
    y = QTensor("y", (1, n_out), 0.2, -7, layout="NC")
    op = Dense(
        "fc",
        ["x"],
        "y",
        weight=rng.integers(-127, 128, (n_out, k)).astype(np.int8),
        weight_scale=rng.uniform(0.002, 0.02, n_out).astype(np.float32),
        bias=rng.integers(-3000, 3000, n_out).astype(np.int32),
    )
    return Graph({"x": x, "y": y}, [op], "x", "y", layout="NCHW")


def _inputs(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.integers(-128, 128, (n, *shape)).astype(np.int8)
    x[0] = 127  # extremes: the largest accumulators
    x[1] = -128
    return x


def _expected_epilogue(kind: str) -> str:
    return "fast" if kind == "fast" else "exact"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_native_conv_host_bit_exact(tmp_path, case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = conv_graph(case, rng)
    manifest = generate(graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"})
    kern = manifest["ops"][0]["kernel"]
    assert kern["name"] == "divqat_conv_s8" and kern["variant"]["path"] == "dsp"
    assert kern["variant"]["epilogue"] == _expected_epilogue(CONV_CASES[case][-1])
    assert manifest["conv_dot"] is None  # no TE conv left
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    got = HostModel(tmp_path / "m").run(x)
    want = run_reference(graph, x, "fixed")
    assert got.shape == want.shape and int((got != want).sum()) == 0
    assert len(np.unique(want)) > 3


def _dw_paths(case: str) -> tuple[bool, bool]:
    """Whether a DW_CASES layer takes the whole-plane path, and the tap-pair path (ops.depthwise._dw_plane_ok/_dw_pair_ok
    restated)."""
    h, w, c, kernel, stride, pad, dil, kind = DW_CASES[case]
    pair = kernel == (3, 3) and dil == (1, 1) and stride[1] in (1, 2) and _expected_epilogue(kind) == "fast"
    oh, ow = out_hw(h, w, kernel, stride, pad, dil)
    plane = pair and stride == (2, 2) and pad[:2] == (0, 0) and w == 2 * ow and 2 <= ow <= 4 and 2 * oh <= h
    return plane, pair


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DW_CASES))
def test_native_dwconv_host_bit_exact(tmp_path, case: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    graph = dw_graph(case, rng)
    manifest = generate(graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m4"})
    kern = manifest["ops"][0]["kernel"]
    assert kern["variant"]["epilogue"] == _expected_epilogue(DW_CASES[case][-1])
    plane, pair = _dw_paths(case)
    assert kern["name"] == ("divqat_dwconv_plane_s8" if plane else "divqat_dwconv_s8")
    assert kern["variant"]["ring"] == ("tap pairs, whole plane" if plane else "tap pairs" if pair else "channel groups")
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    got = HostModel(tmp_path / "m").run(x)
    want = run_reference(graph, x, "fixed")
    assert got.shape == want.shape and int((got != want).sum()) == 0
    assert len(np.unique(want)) > 3


def test_depthwise_outside_the_kernel_stays_on_te(tmp_path) -> None:
    """Depth multiplier 2, and C % 4 != 0 outside the tap-pair path (here 5x5), are not the kernel's: TE kernels,
    still exact."""
    rng = np.random.default_rng(7)
    for c, mult in ((6, 1), (4, 2)):
        x = QTensor("x", (1, 5, 5, c), 0.05, 3, layout="NHWC")
        y = QTensor("y", (1, 5, 5, c * mult), 0.1, -2, layout="NHWC")
        op = Conv2D(
            "dw",
            ["x"],
            "y",
            weight=rng.integers(-127, 128, (c * mult, 1, 5, 5)).astype(np.int8),
            weight_scale=rng.uniform(0.002, 0.02, c * mult).astype(np.float32),
            bias=rng.integers(-3000, 3000, c * mult).astype(np.int32),
            padding=(2, 2, 2, 2),
            groups=c,
        )
        graph = Graph({"x": x, "y": y}, [op], "x", "y", layout="NHWC")
        m = generate(graph, tmp_path / f"c{c}m{mult}", requant="fixed")
        assert m["ops"][0]["kernel"]["name"] == "tvm"
        xs = _inputs((5, 5, c), 10, rng)
        assert int((HostModel(tmp_path / f"c{c}m{mult}").run(xs) != run_reference(graph, xs, "fixed")).sum()) == 0


@pytest.mark.slow
@pytest.mark.parametrize("k,n_out", [(64, 10), (27, 3), (16, 1)])
def test_native_dense_host_bit_exact(tmp_path, k: int, n_out: int) -> None:
    rng = np.random.default_rng(k * 100 + n_out)
    graph = dense_graph(k, n_out, rng)
    manifest = generate(graph, tmp_path / "m", requant="fixed")
    assert manifest["ops"][0]["kernel"]["name"] == "divqat_conv_s8"
    x = _inputs((k,), 200, rng)
    got = HostModel(tmp_path / "m").run(x)
    assert int((got != run_reference(graph, x, "fixed")).sum()) == 0


def test_native_kernels_are_not_used_where_they_do_not_apply(tmp_path) -> None:
    """NCHW, "float" requantization and kernels="te" keep the TE kernels (recorded as such)."""
    rng = np.random.default_rng(3)
    graph = conv_graph("3x3_pad1_cin3_cout5", rng)
    m = generate(graph, tmp_path / "float", requant="float")
    assert m["ops"][0]["kernel"]["name"] == "tvm"
    m = generate(graph, tmp_path / "te", requant="fixed", kernels="te")
    assert m["ops"][0]["kernel"]["name"] == "tvm" and m["conv_dot"]["function"] == "divqat_dot_s8"
    src = (tmp_path / "te" / "kernels.c").read_text()
    assert "divqat_conv_s8" not in src


def _compile_strict(cc: str, flags: list[str], src: Path, obj: Path) -> None:
    """Compile `src` alone with -O2 -Wall -Wextra -Werror; fails the test with the compiler's message."""
    import subprocess

    cmd = [cc, *flags, "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-c", str(src), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cc} {flags}: {proc.stderr}"


def test_native_library_is_standalone_and_warning_free(tmp_path) -> None:
    """kernels.c with the pasted kernels compiles alone with -Wall -Wextra -Werror (host gcc)."""
    rng = np.random.default_rng(4)
    generate(conv_graph("3x3_s2_same_cin16_cout7", rng), tmp_path / "m", requant="fixed")
    src = (tmp_path / "m" / "kernels.c").read_text()
    assert '#include "' not in src.split("divqat-tvm hand-written kernels")[1].split("end of hand-written")[0]
    _compile_strict("gcc", ["-std=c99"], tmp_path / "m" / "kernels.c", tmp_path / "k.o")


def dw_two_graph(rng: np.random.Generator) -> Graph:
    """A plane layer (6x6 -> 3x3, stride 2) then a ring layer (3x3 'same', stride 1): both depthwise entries."""
    c = 5
    t = {
        n: QTensor(n, (1, h, h, c), s, zp, layout="NHWC")
        for n, h, s, zp in (("x", 6, 0.05, -9), ("m", 3, 0.2, 3), ("y", 3, 0.4, -2))
    }
    ops = [
        Conv2D(
            n,
            [i],
            o,
            weight=rng.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8),
            weight_scale=rng.uniform(0.005, 0.02, c).astype(np.float32),
            bias=rng.integers(-3000, 3000, c).astype(np.int32),
            stride=st,
            padding=pad,
            groups=c,
        )
        for n, i, o, st, pad in (("dw1", "x", "m", (2, 2), (0, 0, 1, 1)), ("dw2", "m", "y", (1, 1), (1, 1, 1, 1)))
    ]
    return Graph(t, ops, "x", "y", layout="NHWC")


DW_ENTRY_MODELS = {  # model -> (its graph, whether it has a ring layer, whether it has a plane layer)
    "ring": (lambda rng: dw_graph("3x3_s2_same_c8_w7", rng), True, False),
    "plane": (lambda rng: dw_graph("3x3_s2_plane_c7_w6", rng), False, True),
    "both": (dw_two_graph, True, True),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(DW_ENTRY_MODELS))
def test_depthwise_library_holds_only_the_paths_its_layers_take(tmp_path, model: str) -> None:
    """dwconv_s8.c's two entries: the ring code (divqat_dwconv_s8) and the whole-plane code
    (divqat_dwconv_plane_s8, divqat_dwp_plane_row) are compiled in only when a layer calls them, warning-free
    (-Wall -Wextra -Werror) on the host and, where arm-none-eabi-gcc is installed, for the M7 (DSP) and M55
    (MVE: the Helium kernel divqat_dwm_body instead of the DSP tap-pair code); the library stays bit-exact."""
    import shutil
    import subprocess

    from divqat_tvm.compiler import native
    from divqat_tvm.targets import load_core

    make, ring, plane = DW_ENTRY_MODELS[model]
    rng = np.random.default_rng(11)
    graph = make(rng)
    m = generate(graph, tmp_path / "m", requant="fixed", manifest={"core": "cortex-m7"})
    names = {o["kernel"]["name"] for o in m["ops"]}
    assert names == {f for f, used in (("divqat_dwconv_s8", ring), ("divqat_dwconv_plane_s8", plane)) if used}
    src = (tmp_path / "m" / "kernels.c").read_text()
    prelude = src.split("hand-written kernels (divqat_tvm/compiler/csrc) ---- */")[1].split("#ifndef DIVQAT_NN_H_")[0]
    for fn, used in (("divqat_dwconv_s8", ring), ("divqat_dwconv_plane_s8", plane)):
        assert (f"#define {native.use_define(fn)} 1" in prelude) == used, fn
    compilers = [("gcc", ["-std=c99"], False)]
    if shutil.which("arm-none-eabi-gcc"):
        compilers += [
            ("arm-none-eabi-gcc", list(load_core(c).cflags), c == "cortex-m55") for c in ("cortex-m7", "cortex-m55")
        ]
    for i, (cc, flags, mve) in enumerate(compilers):
        obj = tmp_path / f"k{i}.o"
        _compile_strict(cc, flags, tmp_path / "m" / "kernels.c", obj)
        nm = shutil.which("arm-none-eabi-nm") if cc != "gcc" else "nm"
        syms = subprocess.run([str(nm), str(obj)], capture_output=True, text=True, check=True).stdout
        assert ("divqat_dwconv_plane_s8" in syms) == plane and (" divqat_dwconv_s8" in syms) == ring, (cc, syms)
        # the DSP / C tap-pair code; on the M55 the Helium kernel runs every tap-pair layer instead
        assert ("divqat_dwp_plane_row" in syms) == (plane and not mve), (cc, syms)
        assert ("divqat_dwp_row_s1" in syms) == (ring and not mve) and ("divqat_dwm_body" in syms) == mve, (cc, syms)
    x = _inputs(graph.input_tensor.shape[1:], 40, rng)
    assert int((HostModel(tmp_path / "m").run(x) != run_reference(graph, x, "fixed")).sum()) == 0


@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
@pytest.mark.parametrize("board,core,path", KERNEL_PATHS)
def test_native_kernel_paths_bit_exact_under_qemu(tmp_path, board: str, core: str, path: str) -> None:
    """Each path of the C kernels on its emulated core (one firmware per case): conv, depthwise, add (image
    inputs only: the firmware's oracle takes [N, C, H, W])."""
    from divqat_tvm.oracle.backend_device import QemuOracle

    cases = (
        [(c, conv_graph) for c in QEMU_CASES]
        + [(c, dw_graph) for c in DW_CASES]
        + [(c, add_graph) for c in ADD_CASES if len(ADD_CASES[c][0]) == 4]
    )
    for case, make in cases:
        rng = np.random.default_rng(sum(map(ord, case + board)))
        graph = make(case, rng)
        out = tmp_path / case
        manifest = generate(
            graph, out, requant="fixed", manifest={"core": core, "target": board, "name": case, "meta": {}}
        )
        assert manifest["ops"][-1]["kernel"]["variant"]["path"] == path
        x = _inputs(graph.input_tensor.shape[1:], 6, rng)
        with QemuOracle(out, board=board, transfer="shared", instances=1) as dev:
            got = np.stack([r.logits for r in dev.run_int8(x.reshape(len(x), -1))])
        want = run_reference(graph, x, "fixed").reshape(len(x), -1)
        assert got.shape == want.shape and int((got != want).sum()) == 0, case


MODELS = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite"}


@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
@pytest.mark.parametrize("model", list(MODELS))
def test_mlperf_kws_vww_bit_exact_host_and_qemu(tmp_path, model: str) -> None:
    """KWS (DS-CNN) and VWW (MobileNetV1) compiled with the native kernels: host build and firmware on the
    Cortex-M7, M4 and M55 equal LiteRT's BUILTIN_REF on random inputs."""
    from test_tflite_import import MLPERF, litert, litert_run

    from divqat_tvm.compiler.tflite_import import compile_tflite
    from divqat_tvm.oracle.backend_device import QemuOracle

    path = MLPERF.parent / MODELS[model]
    assert path.is_file(), f"the MLPerf Tiny model is not at {path} (shared/models/ beside the repo)"
    out = tmp_path / model
    manifest = compile_tflite(path, out, target="mps2-an500", core="cortex-m7")
    kinds = {o["kernel"]["name"] for o in manifest["ops"]}
    assert {"divqat_conv_s8", "divqat_dwconv_s8"} <= kinds
    shape = tuple(manifest["input"]["shape"][1:])
    rng = np.random.default_rng(len(model))
    xs = rng.integers(-128, 128, (200, *shape)).astype(np.int8)  # ≥ 200 on the host, ≥ 20 per core under QEMU
    ref = litert_run(litert(path), xs[:, None])[:, 0]
    assert int((HostModel(out).run(xs) != ref).sum()) == 0
    for board, n in (("mps2-an500", 20), ("mps2-an386", 20), ("mps3-an547", 20)):
        with QemuOracle(out, board=board, transfer="shared", instances=2) as dev:
            got = np.stack([r.logits for r in dev.run_int8(xs[:n].reshape(n, -1))])
        assert int((got != ref[:n]).sum()) == 0, board


def test_nchw_graph_converted_to_nhwc_bit_exact(tmp_path) -> None:
    """layout.to_nhwc: an NCHW graph (conv → flatten of a 3x4 map → FC → logits) runs on the NHWC kernels with
    its NCHW interface kept: the flatten becomes a gather in NCHW order; both schemes equal the NCHW reference."""
    from divqat_tvm.compiler.layout import FlattenNchwOrder, NchwToNhwc, to_nhwc

    rng = np.random.default_rng(11)
    t = {
        "x": QTensor("x", (1, 4, 5, 6), 0.05, 3, layout="NCHW"),
        "c": QTensor("c", (1, 8, 3, 4), 0.08, -128, layout="NCHW"),
        "f": QTensor("f", (1, 96), 0.08, -128, layout="NC"),
        "y": QTensor("y", (1, 5), 0.2, 2, layout="NC"),
    }
    from divqat_tvm.compiler.graph import Reshape

    ops = [
        Conv2D(
            "conv",
            ["x"],
            "c",
            weight=rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8),
            weight_scale=rng.uniform(0.002, 0.02, 8).astype(np.float32),
            bias=rng.integers(-2000, 2000, 8).astype(np.int32),
            act_min=-128,
            act_max=127,
        ),
        Reshape("flat", ["c"], "f"),
        Dense(
            "fc",
            ["f"],
            "y",
            weight=rng.integers(-127, 128, (5, 96)).astype(np.int8),
            weight_scale=rng.uniform(0.002, 0.02, 5).astype(np.float32),
            bias=rng.integers(-2000, 2000, 5).astype(np.int32),
        ),
    ]
    graph = Graph(t, ops, "x", "y", layout="NCHW")
    nhwc = to_nhwc(graph)
    assert [type(o) for o in nhwc.ops][:1] == [NchwToNhwc] and any(isinstance(o, FlattenNchwOrder) for o in nhwc.ops)
    assert nhwc.tensors["c"].layout == "NHWC" and nhwc.input_tensor.layout == "NCHW"
    x = _inputs((4, 5, 6), 50, rng)
    for scheme in ("fixed", "float"):
        want = run_reference(graph, x, scheme)
        assert int((run_reference(nhwc, x, scheme) != want).sum()) == 0
        m = generate(nhwc, tmp_path / scheme, requant=scheme)
        assert int((HostModel(tmp_path / scheme).run(x) != want).sum()) == 0
        if scheme == "fixed":
            assert {o["kernel"]["name"] for o in m["ops"]} >= {"divqat_conv_s8"}


AD01 = Path("/work/shared/models/ad01_int8.tflite")


def _haway_fixed(acc: np.ndarray, m: int, s: int) -> np.ndarray:
    """csrc/divqat_nn.h's DQ_HAWAY rounding in numpy (uint64, as the C): sign(acc)·((|acc|·M + 2^(S−1)) >> S)."""
    ua = np.abs(acc).astype(np.uint64)
    r = ((ua * np.uint64(m) + np.uint64(1 << (s - 1))) >> np.uint64(s)).astype(np.int64)
    return np.where(acc < 0, -r, r)


def _round_half_away_f64(acc: np.ndarray, scale: float) -> np.ndarray:
    """LiteRT's reference FULLY_CONNECTED rounding in numpy (the TfliteDense reference's double operations)."""
    v = acc.astype(np.float64) * scale
    t = np.trunc(v)
    f = v - t
    return (t + (f >= 0.5) - (f <= -0.5)).astype(np.int64)


@pytest.mark.slow
@pytest.mark.needs_tools(needs_files=(AD01,))
def test_fc_f64_rounding_as_fixed_point_exhaustive_over_ad01_accumulators() -> None:
    """Every AD01 layer gets the integer epilogue, and it equals LiteRT's double rounding (after zp_out and the
    clamp) for EVERY accumulator the layer can produce: the whole range Σ w·(x − zp_in) + bias over int8 x."""
    from divqat_tvm.compiler.ops import dense
    from divqat_tvm.compiler.tflite_import import import_tflite

    graph = import_tflite(AD01)
    checked = 0
    for op in graph.ops:
        assert isinstance(op, Dense) and hasattr(op, "effective_scales")
        ti, to = graph.tensors[op.inputs[0]], graph.tensors[op.output]
        w = op.weight.astype(np.int64)
        lo_x, hi_x = -128 - ti.zero_point, 127 - ti.zero_point
        acc_lo = op.bias.astype(np.int64) + np.where(w > 0, w * lo_x, w * hi_x).sum(axis=1)
        acc_hi = op.bias.astype(np.int64) + np.where(w > 0, w * hi_x, w * lo_x).sum(axis=1)
        n_max = max(op.act_max - to.zero_point, to.zero_point - op.act_min) + 1
        scales = op.effective_scales(graph)
        for sc in np.unique(scales):
            fixed = dense.f64_as_fixed(float(sc), n_max)
            assert fixed is not None
            m, s = fixed
            chans = scales == sc
            lo, hi = int(acc_lo[chans].min()), int(acc_hi[chans].max())
            for start in range(lo, hi + 1, 1 << 23):
                acc = np.arange(start, min(hi + 1, start + (1 << 23)), dtype=np.int64)
                want = np.clip(_round_half_away_f64(acc, float(sc)) + to.zero_point, op.act_min, op.act_max)
                got = np.clip(_haway_fixed(acc, m, s) + to.zero_point, op.act_min, op.act_max)
                assert int((got != want).sum()) == 0, (op.name, start)
                checked += len(acc)
    assert checked > 5_000_000  # 7.2 million accumulators over the ten layers


def test_fc_f64_as_fixed_refuses_what_it_cannot_prove(tmp_path) -> None:
    """No proof, no integer path: scales >= 1 are refused, and a layer with any unproven scale keeps the double
    rounding (DQ_F64), still exact."""
    from divqat_tvm.compiler.ops import dense

    assert dense.f64_as_fixed(1.5, 128) is None and dense.f64_as_fixed(0.0, 128) is None
    m, s = dense.f64_as_fixed(0.0123, 256)  # type: ignore[misc]
    acc = np.arange(-(1 << 16), 1 << 16, dtype=np.int64)
    assert (_haway_fixed(acc, m, s) == _round_half_away_f64(acc, 0.0123)).all()
    # a near-tie scale where a slightly wrong multiplier would show: every proven pair agrees on its thresholds
    for sc in (0.5 - 2**-40, 1 / 3, 2.0**-20 * 3):
        f = dense.f64_as_fixed(sc, 300)
        if f is not None:
            a = np.arange(0, int(301 / sc) + 2, dtype=np.int64)
            got = np.minimum(_haway_fixed(a, *f), 301)
            want = np.minimum(_round_half_away_f64(a, sc), 301)
            assert (got == want).all(), sc


@pytest.mark.slow
@pytest.mark.needs_tools(needs_files=(AD01,))
def test_fc_falls_back_to_double_rounding_without_proof(tmp_path, monkeypatch) -> None:
    from test_tflite_import import litert, litert_run

    from divqat_tvm.compiler.ops import dense
    from divqat_tvm.compiler.tflite_import import compile_tflite

    monkeypatch.setattr(dense, "f64_as_fixed", lambda scale, n_max: None)
    m = compile_tflite(AD01, tmp_path / "ad01", target="mps2-an500", core="cortex-m7")
    assert all(o["kernel"]["variant"]["epilogue"].startswith("float64") for o in m["ops"])
    xs = np.random.default_rng(5).integers(-128, 128, (20, 640)).astype(np.int8)
    assert int((HostModel(tmp_path / "ad01").run(xs) != litert_run(litert(AD01), xs[:, None])[:, 0]).sum()) == 0
