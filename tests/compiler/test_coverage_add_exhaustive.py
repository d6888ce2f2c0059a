"""Issue #15 (3): the "float" Add equals onnxruntime's QLinearAdd on all 65,536 int8 input pairs, for 40
scale/zero-point combinations, on the host build. onnxruntime (MLAS) computes its constant term
zc − (r_ac·za + r_bc·zb) with one fused multiply-add; rounding both products separately is off by one on some
scale pairs (two of these 40 combinations)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Add, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.ops.movement import Transpose
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from coverage_models import PAIR_A, PAIR_B, ort_all_pairs  # noqa: E402


def combos(n: int = 40, seed: int = 0) -> list[tuple[float, int, float, int, float, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sa, sb, sc = (float(np.float32(10 ** rng.uniform(-3, -0.5))) for _ in range(3))
        za, zb, zc = (int(v) for v in rng.integers(-128, 128, 3))
        out.append((sa, za, sb, zb, sc, zc))
    return out


COMBOS = combos()
QA, QB = PAIR_A, PAIR_B


def ort_add(sa, za, sb, zb, sc, zc) -> np.ndarray:
    return ort_all_pairs("Add", sa, za, sb, zb, sc, zc)


def add_graph(sa, za, sb, zb, sc, zc) -> Graph:
    """input x [1, 1, 256, 256] (a = x), its transpose relabelled with b's qparams, Add → y."""
    shape = (1, 1, 256, 256)
    t = {"x": QTensor("x", shape, sa, za), "xt": QTensor("xt", shape, sb, zb), "y": QTensor("y", shape, sc, zc)}
    ops = [Transpose("t", ["x"], "xt", perm=(0, 1, 3, 2)), Add("add", ["x", "xt"], "y")]
    return Graph(t, ops, "x", "y")


def test_fma_fixed_part_is_exact():
    assert rq.fma_f32(3.0, 1.0 / 3, -1.0) == np.float32(np.float64(3.0) * np.float64(np.float32(1.0 / 3)) - 1.0)
    assert rq.fma_f32(1.0, 1.0, 2.0**-30) == np.float32(1.0)


def test_reference_equals_onnxruntime_on_all_pairs():
    """The numpy reference's float Add, all 65,536 pairs × 40 combinations (no compile: fast)."""
    x = (QA - 128 + 128).astype(np.int8).reshape(1, 1, 256, 256)  # a = row − 128
    bad = {}
    for k, c in enumerate(COMBOS):
        ref = run_reference(add_graph(*c), x, "float").astype(np.int64)[0, 0]
        ort = ort_add(*c)
        if (ref != ort).any():
            bad[k] = int((ref != ort).sum())
    assert bad == {}


@pytest.mark.slow
def test_host_build_equals_onnxruntime_on_all_pairs(tmp_path):
    x = QA.astype(np.int8).reshape(1, 1, 256, 256)
    bad = {}
    for k, c in enumerate(COMBOS):
        generate(add_graph(*c), tmp_path / f"add{k}", requant="float")
        out = HostModel(tmp_path / f"add{k}").run(x).astype(np.int64)[0, 0]
        ort = ort_add(*c)
        if (out != ort).any():
            bad[k] = int((out != ort).sum())
    assert bad == {}
