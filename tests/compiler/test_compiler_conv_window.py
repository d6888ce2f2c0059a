"""NHWC int8 convs whose kernel window runs over the in-bounds taps only (kernels._taps) and, for groups 1
without horizontal dilation, one contiguous dot product per kernel row (divqat_dot_s8): bit-exact on the
host with the numpy reference for stride, asymmetric padding, dilation, groups and channel counts that
hit every length path of the dot helper (8-wide, 4-wide, scalar tail)."""

from __future__ import annotations

import numpy as np
import pytest

from divqat_tvm.compiler.graph import Conv2D, Graph, QTensor
from divqat_tvm.compiler.host import HostModel
from divqat_tvm.compiler.pipeline import generate
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
    op = Conv2D("conv", ["x"], "y", weight=rng.integers(-127, 128, (cout, cin // groups, kh, kw)).astype(np.int8),
                weight_scale=rng.uniform(0.002, 0.02, cout).astype(np.float32),
                bias=rng.integers(-3000, 3000, cout).astype(np.int32), stride=stride, padding=pad, dilation=dil,
                groups=groups)
    return Graph({"x": x, "y": y}, [op], "x", "y", layout="NHWC")


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["fixed", "float"])
@pytest.mark.parametrize("case", list(CASES))
def test_nhwc_conv_window_bit_exact(tmp_path, case: str, scheme: str) -> None:
    rng = np.random.default_rng(sum(map(ord, case)))
    cin, cout, kernel, stride, pad, dil, groups = CASES[case]
    graph = _graph(cin, cout, kernel, stride, pad, dil, groups, rng)
    manifest = generate(graph, tmp_path / "m", requant=scheme, manifest={"core": "cortex-m7"})
    row_dot = groups == 1 and dil[1] == 1
    assert manifest["conv_dot"] == ({"function": "divqat_dot_s8", "kind": "smlad"} if row_dot else None)
    x = rng.integers(-128, 128, (6, H, W, cin)).astype(np.int8)
    x[0] = 127  # extremes: x − zp reaches its largest magnitude
    x[1] = -128
    got = HostModel(tmp_path / "m").run(x)
    want = run_reference(graph, x, scheme)
    assert got.shape == want.shape
    assert int((got != want).sum()) == 0
    assert len(np.unique(want)) > 3  # not a saturated, trivially equal output
