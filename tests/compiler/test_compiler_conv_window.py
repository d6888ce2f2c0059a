"""NHWC int8 convs whose kernel window runs over the in-bounds taps only (ops.conv._taps) and, for groups 1
without horizontal dilation, one contiguous dot product per kernel row (divqat_dot_s8): bit-exact on the
host with the numpy reference for stride, asymmetric padding, dilation, groups and channel counts that
hit every length path of the dot helper (8-wide, 4-wide, scalar tail). These are the TE kernels (kernels="te"):
the fallback of every conv the hand-written kernels do not take (test_kernels_blocked.py tests those). Its SMLAD and MVE paths are checked on
the emulated cores by test_tflite_qemu.py (MLPerf ResNet-8 on M7, M4, M55 against LiteRT)."""

from __future__ import annotations

import numpy as np
import pytest

from divqat_tvm.compiler import lower
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Conv2D, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.reference import run_reference

# (cin, cout, kernel, stride, padding top/left/bottom/right, dilation, groups)
CASES = {
    "3x3_pad1_cin3": (3, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "3x3_s2_same_cin12": (12, 5, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), 1),
    "5x3_asym_s21_dil21_cin16": (16, 3, (5, 3), (2, 1), (3, 0, 1, 2), (2, 1), 1),
    "1x1_s2_cin8": (8, 6, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    "3x3_groups2_cin8": (8, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "3x3_dil12_cin4": (4, 3, (3, 3), (1, 1), (1, 2, 1, 2), (1, 2), 1),
}
H, W = 7, 9


def _graph(cin: int, cout: int, kernel, stride, pad, dil, groups: int, rng: np.random.Generator) -> Graph:
    kh, kw = kernel
    oh = (H + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (W + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    x = QTensor("x", (1, H, W, cin), 0.05, 7, layout="NHWC")
    y = QTensor("y", (1, oh, ow, cout), 0.11, -3, layout="NHWC")
    op = Conv2D(
        "conv",
        ["x"],
        "y",
        weight=rng.integers(-127, 128, (cout, cin // groups, kh, kw)).astype(np.int8),
        weight_scale=rng.uniform(0.002, 0.02, cout).astype(np.float32),
        bias=rng.integers(-3000, 3000, cout).astype(np.int32),
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=groups,
    )
    return Graph({"x": x, "y": y}, [op], "x", "y", layout="NHWC")


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["fixed", "float"])
@pytest.mark.parametrize("case", list(CASES))
def test_nhwc_conv_window_bit_exact(tmp_path, case: str, scheme: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    cin, cout, kernel, stride, pad, dil, groups = CASES[case]
    graph = _graph(cin, cout, kernel, stride, pad, dil, groups, rng)
    manifest = generate(graph, tmp_path / "m", requant=scheme, manifest={"core": "cortex-m7"}, kernels="te")
    row_dot = groups == 1 and dil[1] == 1
    assert manifest["conv_dot"] == ({"function": "divqat_dot_s8", "kind": "smlad"} if row_dot else None)
    if row_dot:
        assert lower.conv_dot_kernel((tmp_path / "m" / "kernels.c").read_text(), "cortex-m55")["kind"] == "mve"
        assert lower.conv_dot_kernel((tmp_path / "m" / "kernels.c").read_text(), "cortex-m0plus")["kind"] == "c"
    x = rng.integers(-128, 128, (6, H, W, cin)).astype(np.int8)
    x[0] = 127  # extremes: x − zp reaches its largest magnitude
    x[1] = -128
    got = HostModel(tmp_path / "m").run(x)
    want = run_reference(graph, x, scheme)
    assert got.shape == want.shape
    assert int((got != want).sum()) == 0
    assert len(np.unique(want)) > 3  # not a saturated, trivially equal output


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
@pytest.mark.parametrize("case", ["3x3_pad1_cin3", "5x3_asym_s21_dil21_cin16"])
@pytest.mark.parametrize(
    "board,core,kind",
    [("mps2-an500", "cortex-m7", "smlad"), ("mps3-an547", "cortex-m55", "mve"), ("mps2-an385", "cortex-m3", "c")],
)
def test_row_dot_paths_bit_exact_under_qemu(tmp_path, case: str, board: str, core: str, kind: str) -> None:
    """The SMLAD (M7), MVE (M55, tail-predicated) and plain (M3) inner products on the emulated core: row
    lengths 9 and 6 (cin 3) reach the 8-wide, 4-wide and scalar tails; cin 16 the full-width steps."""
    from divqat_tvm.oracle.backend_device import QemuOracle

    rng = np.random.default_rng(sum(map(ord, case + board)))
    graph = _graph(*CASES[case], rng)
    manifest = generate(
        graph,
        tmp_path / "m",
        requant="fixed",
        manifest={"core": core, "target": board, "name": "m", "meta": {}},
        kernels="te",
    )
    assert manifest["conv_dot"]["kind"] == kind
    x = rng.integers(-128, 128, (5, H, W, CASES[case][0])).astype(np.int8)
    x[0] = 127
    with QemuOracle(tmp_path / "m", board=board, transfer="shared", instances=1) as dev:
        got = np.stack([r.logits for r in dev.run_int8(x.reshape(len(x), -1))])
    want = run_reference(graph, x, "fixed").reshape(len(x), -1)
    assert got.shape == want.shape and int((got != want).sum()) == 0
