"""Issue #15 (3): the "float" Add equals onnxruntime's QLinearAdd on all 65,536 int8 input pairs, for 40
scale/zero-point combinations, on the host build. onnxruntime (MLAS) computes its constant term
zc − (r_ac·za + r_bc·zb) with one fused multiply-add; rounding both products separately is off by one on some
scale pairs (two of these 40 combinations)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from divqat_tvm.compiler import ort_reference
from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.generate import generate
from divqat_tvm.compiler.graph import Add, Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.ops_extra import Transpose
from divqat_tvm.compiler.reference import run_reference


def combos(n: int = 40, seed: int = 0) -> list[tuple[float, int, float, int, float, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sa, sb, sc = (float(np.float32(10 ** rng.uniform(-3, -0.5))) for _ in range(3))
        za, zb, zc = (int(v) for v in rng.integers(-128, 128, 3))
        out.append((sa, za, sb, zb, sc, zc))
    return out


COMBOS = combos()
# every (a, b) pair: a = row − 128, b = column − 128
QA, QB = (v.astype(np.int64) for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))


def ort_add_model(sa, za, sb, zb, sc, zc):
    inits, nodes = [], []

    def c(v, n, dt):
        inits.append(numpy_helper.from_array(np.array(v, dt), n))
        return n

    for nm, s, z in (("a", sa, za), ("b", sb, zb)):
        nodes.append(
            helper.make_node("QuantizeLinear", [nm, c(s, nm + "s", np.float32), c(z, nm + "z", np.int8)], [nm + "q"])
        )
        nodes.append(helper.make_node("DequantizeLinear", [nm + "q", nm + "s", nm + "z"], [nm + "d"]))
    nodes.append(helper.make_node("Add", ["ad", "bd"], ["y"]))
    nodes.append(helper.make_node("QuantizeLinear", ["y", c(sc, "cs", np.float32), c(zc, "cz", np.int8)], ["yq"]))
    nodes.append(helper.make_node("DequantizeLinear", ["yq", "cs", "cz"], ["out"]))
    shape = [1, 65536]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "ab"],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def ort_add(sa, za, sb, zb, sc, zc) -> np.ndarray:
    sess = ort_reference.session(ort_add_model(sa, za, sb, zb, sc, zc))
    f = np.float32
    a = (f(sa) * (QA - za).astype(f)).astype(f).reshape(1, -1)
    b = (f(sb) * (QB - zb).astype(f)).astype(f).reshape(1, -1)
    y = sess.run(None, {"a": a, "b": b})[0]
    return (np.rint(y / f(sc)) + zc).astype(np.int64).reshape(256, 256)


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
