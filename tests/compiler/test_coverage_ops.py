"""Issue #15: the operators of onnxruntime-quantized QDQ models — Concat, Mul, Pad, Sigmoid / Tanh / HardSigmoid / HardSwish
(256-entry tables), kept Relu/Clip between Q/DQ pairs (QDQKeepRemovableActivations), a two-scale Add, squeeze-
excite — bit-exact with onnxruntime (ORT_ENABLE_ALL, the fused QLinearConcat / QLinearMul / QLinearSigmoid and
the float DQ → HardSigmoid → Q it runs) and with the numpy reference.

A table entry is QuantizeLinear(f(DequantizeLinear(q))) computed as onnxruntime computes it (QlinearBuildLookupTable
and MLAS's logistic for Sigmoid), so every code is checked, not a sample. ReduceMean (torch's `mean`) runs in
float inside onnxruntime (not fused, summation order its own): within one level there, exact as the reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from divqat_tvm.compiler import ort_reference
from divqat_tvm.compiler.generate import compile_onnx, generate
from divqat_tvm.compiler.graph import Graph, QTensor
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.onnx_import import import_onnx
from divqat_tvm.compiler.ops.elementwise import Mul, unary_table
from divqat_tvm.compiler.ops.movement import Transpose
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from coverage_models import coverage_model, ort_all_pairs, ort_session  # noqa: E402

N = 1000
CODES = np.arange(-128, 128, dtype=np.int64)
F32 = np.float32


def scale_sets(n: int, seed: int, out_unit: bool) -> list[tuple[float, int, float, int]]:
    """(s_in, zp_in, s_out, zp_out); `out_unit`: an output scale for values in [0, 1] (Sigmoid-like)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s_in = float(F32(10 ** rng.uniform(-2.5, -0.5)))
        s_out = float(F32(rng.uniform(0.6, 1.4) / 255)) if out_unit else float(F32(10 ** rng.uniform(-2.5, -0.5)))
        out.append((s_in, int(rng.integers(-128, 128)), s_out, int(rng.integers(-128, 128))))
    return out


def unary_model(op: str, s_in: float, zp_in: int, s_out: float, zp_out: int, n: int = 256, **attrs) -> onnx.ModelProto:
    """[1, n] float → Q → DQ → op → Q → DQ (opset 14, so HardSwish is one node)."""
    inits = [
        numpy_helper.from_array(np.array(s_in, np.float32), "si"),
        numpy_helper.from_array(np.array(zp_in, np.int8), "zi"),
        numpy_helper.from_array(np.array(s_out, np.float32), "so"),
        numpy_helper.from_array(np.array(zp_out, np.int8), "zo"),
    ]
    extra = []
    if op == "Clip":
        inits += [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in (("lo", 0.0), ("hi", 1.5))]
        extra = ["lo", "hi"]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "si", "zi"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "si", "zi"], ["xd"], name="dq_in"),
        helper.make_node(op, ["xd", *extra], ["y"], name="the_op", **attrs),
        helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["out"], name="dq_out"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, n])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    return m


def all_codes_input(s_in: float, zp_in: int) -> np.ndarray:
    """The float inputs that quantize to every int8 code, in code order (exact: they are (q − zp)·s)."""
    return (F32(s_in) * (CODES - zp_in).astype(F32)).astype(F32)[None]


UNARY = {
    "Sigmoid": ("sigmoid", {}, True),
    "Tanh": ("tanh", {}, False),
    "HardSigmoid": ("hardsigmoid", {"alpha": 0.25, "beta": 0.4}, True),
    "HardSwish": ("hardswish", {}, False),
    "Relu": ("identity", {}, False),
    "Clip": ("identity", {}, False),
}


def _expected_table(op: str, s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    func, attrs, _ = UNARY[op]
    lo, hi = -128, 127
    if op in ("Relu", "Clip"):
        lo = max(lo, zp_out)
    if op == "Clip":
        hi = min(hi, zp_out + int(round(1.5 / s_out)))
    return unary_table(func, s_in, zp_in, s_out, zp_out, lo, hi, **attrs).astype(np.int64)


@pytest.mark.parametrize("op", list(UNARY))
def test_tables_equal_onnxruntime_on_every_code(op):
    """20 scale/zero-point sets × 256 codes, against onnxruntime fused (ORT_ENABLE_ALL after its uint8 rewrite)
    and unoptimised (ORT_DISABLE_ALL)."""
    _, attrs, unit = UNARY[op]
    bad = {}
    for k, (s_in, zp_in, s_out, zp_out) in enumerate(scale_sets(20, 7, unit)):
        m = unary_model(op, s_in, zp_in, s_out, zp_out, **attrs)
        table = _expected_table(op, s_in, zp_in, s_out, zp_out)
        x = all_codes_input(s_in, zp_in)
        fused = ort_reference.int8_outputs(ort_reference.session(m), x, s_out, zp_out)[0]
        sess = ort_session_proto(m)
        plain = ort_reference.int8_outputs(sess, x, s_out, zp_out)[0]
        if (table != fused).any() or (table != plain).any():
            bad[k] = (int((table != fused).sum()), int((table != plain).sum()))
    assert bad == {}


def ort_session_proto(m: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "HardSwish", "Clip"])
def test_unary_model_compiles_and_runs_every_code(tmp_path, op):
    """A [1, 256] model (a 2-D input) compiled and run on the host: every code equals onnxruntime."""
    _, attrs, unit = UNARY[op]
    s_in, zp_in, s_out, zp_out = scale_sets(1, 3, unit)[0]
    p = tmp_path / "u.onnx"
    onnx.save(unary_model(op, s_in, zp_in, s_out, zp_out, **attrs), p)
    g = import_onnx(p)
    assert g.input_tensor.shape == (1, 256) and [o.name for o in g.ops] == ["the_op"]
    ref = ort_reference.int8_outputs(ort_reference.session(p), all_codes_input(s_in, zp_in), s_out, zp_out)
    for scheme in ("float", "fixed"):
        compile_onnx(p, tmp_path / scheme, requant=scheme)
        out = HostModel(tmp_path / scheme).run(CODES.astype(np.int8)[None]).astype(np.int64)
        assert int((out != ref).sum()) == 0, scheme


# ---------------------------------------------------------------- Mul: all 65,536 pairs
QA, QB = (v.astype(np.int64) for v in np.meshgrid(CODES, CODES, indexing="ij"))


def ort_mul(sa, za, sb, zb, sc, zc) -> np.ndarray:
    return ort_all_pairs("Mul", sa, za, sb, zb, sc, zc)


def mul_graph(sa, za, sb, zb, sc, zc) -> Graph:
    """input x [1, 256, 256] (a = x), its transpose relabelled with b's qparams, Mul → y."""
    shape = (1, 256, 256)
    t = {
        "x": QTensor("x", shape, sa, za, "NC"),
        "xt": QTensor("xt", shape, sb, zb, "NC"),
        "y": QTensor("y", shape, sc, zc, "NC"),
    }
    return Graph(t, [Transpose("t", ["x"], "xt", perm=(0, 2, 1)), Mul("mul", ["x", "xt"], "y")], "x", "y")


def mul_sets(n: int = 20) -> list[tuple[float, int, float, int, float, int]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(n):
        sa, sb = (float(F32(10 ** rng.uniform(-2.5, -0.5))) for _ in range(2))
        sc = float(F32(sa * sb * 10 ** rng.uniform(1.5, 3.5)))
        za, zb, zc = (int(v) for v in rng.integers(-128, 128, 3))
        out.append((sa, za, sb, zb, sc, zc))
    return out


def test_mul_reference_equals_onnxruntime_on_all_pairs():
    x = QA.astype(np.int8)[None]
    bad = {}
    for k, c in enumerate(mul_sets()):
        ref = run_reference(mul_graph(*c), x, "float").astype(np.int64)[0]
        ort = ort_mul(*c)
        if (ref != ort).any():
            bad[k] = int((ref != ort).sum())
    assert bad == {}


@pytest.mark.slow
def test_mul_host_build_equals_reference_on_all_pairs(tmp_path):
    x = QA.astype(np.int8)[None]
    for k, c in enumerate(mul_sets(3)):
        for scheme in ("float", "fixed"):
            generate(mul_graph(*c), tmp_path / f"mul{k}{scheme}", requant=scheme)
            out = HostModel(tmp_path / f"mul{k}{scheme}").run(x).astype(np.int64)[0]
            ref = run_reference(mul_graph(*c), x, scheme).astype(np.int64)[0]
            assert int((out != ref).sum()) == 0, (k, scheme)
            if scheme == "float":
                assert int((out != ort_mul(*c)).sum()) == 0, k


# ---------------------------------------------------------------- whole onnxruntime-quantized models, 1,000 inputs
MODELS = {
    "concat": ("concat", {}),
    "kept": ("lut_clamp", {"keep_activations": True}),
    "se": ("lut_sigmoid", {}),
    "two_scale_add": ("add", {}),
    "pad": ("pad", {}),  # torch's F.pad: its pads computed by a constant subgraph the importer folds
    "softmax": ("softmax", {}),  # output scale 1/255 (quantize_static): "float" only, "fixed" refuses it
}


def _host(p: Path, out: Path, scheme: str, x: np.ndarray) -> tuple[np.ndarray, HostModel]:
    compile_onnx(p, out, requant=scheme)
    h = HostModel(out)
    return h.run(h.quantize_input(x)).astype(np.int64), h


@pytest.fixture(scope="module")
def x1000() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((N, 3, 12, 12)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_model_bit_exact_with_onnxruntime_1000_inputs(tmp_path, x1000, name):
    kind, kw = MODELS[name]
    p = coverage_model(name, tmp_path / f"{name}.onnx", **kw)
    g = import_onnx(p)
    assert kind in [o.kind for o in g.ops]
    assert all(o.name.startswith("/") for o in g.ops)  # the ONNX node names torch gave them
    if name == "two_scale_add":
        add = next(o for o in g.ops if o.kind == "add")
        sa, sb = (g.tensors[n].scale for n in add.inputs)
        assert max(sa, sb) / min(sa, sb) > 4
    if name == "se":
        assert {"mul", "lut_hardsigmoid", "globalavgpool"} <= {o.kind for o in g.ops}
    for scheme in ("float", "fixed") if name != "softmax" else ("float",):
        out, h = _host(p, tmp_path / scheme, scheme, x1000)
        ref = run_reference(g, h.quantize_input(x1000), scheme).astype(np.int64)
        assert int((out != ref).sum()) == 0, scheme
    m = h.manifest["output"]
    ort = ort_reference.int8_outputs(ort_reference.session(p), x1000, m["scale"], m["zero_point"])
    out, _ = _host(p, tmp_path / "float2", "float", x1000)
    assert int((out != ort).sum()) == 0
    assert len(np.unique(ort, axis=0)) > N // 2  # the inputs exercise the model


@pytest.mark.slow
def test_reduce_mean_squeeze_excite_within_one_level(tmp_path, x1000):
    """torch's mean((2, 3)) exports ReduceMean, which onnxruntime runs in float (not fused): its float sum is
    its own, so the compiled model is within one level there and exact with the reference."""
    p = coverage_model("se_mean", tmp_path / "se_mean.onnx")
    g = import_onnx(p)
    assert "ReduceMean" in [n.op_type for n in onnx.load(str(p)).graph.node]
    out, h = _host(p, tmp_path / "f", "float", x1000)
    assert int((out != run_reference(g, h.quantize_input(x1000), "float")).sum()) == 0
    m = h.manifest["output"]
    plain = ort_reference.int8_outputs(ort_session(p, optimized=False), x1000, m["scale"], m["zero_point"])
    assert np.abs(out - plain).max() <= 1


# ---------------------------------------------------------------- inputs that are not NCHW images
SHAPES = {"mlp": (20,), "seq": (16, 6), "nhwc": (12, 12, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_non_nchw_inputs_bit_exact_with_onnxruntime(tmp_path, name):
    """[N, 20] (Gemm only), [N, T, C] (transposed and unsqueezed to [N, C, 1, T] before its QuantizeLinear) and
    NHWC [N, H, W, C] permuted inside the model: the float moves before the input's QuantizeLinear run on the
    quantized codes (quantization commutes with them); 1,000 inputs, bit-exact with onnxruntime."""
    p = coverage_model(name, tmp_path / f"{name}.onnx", input_shape=SHAPES[name])
    g = import_onnx(p)
    assert g.input_tensor.shape == (1, *SHAPES[name])
    x = np.random.default_rng(8).standard_normal((N, *SHAPES[name])).astype(np.float32)
    for scheme in ("float", "fixed"):
        out, h = _host(p, tmp_path / scheme, scheme, x)
        ref = run_reference(g, h.quantize_input(x), scheme).astype(np.int64)
        assert int((out != ref).sum()) == 0, scheme
    assert h.manifest["input"]["shape"] == [1, *SHAPES[name]]
    if name == "nhwc":  # the permute is a copy and the conv runs NHWC
        assert h.manifest["input"]["layout"] == "NHWC" and h.manifest["compute_layout"] == "NHWC"
    m = h.manifest["output"]
    ort = ort_reference.int8_outputs(ort_reference.session(p), x, m["scale"], m["zero_point"])
    out, _ = _host(p, tmp_path / "float2", "float", x)
    assert int((out != ort).sum()) == 0


# ---------------------------------------------------------------- under QEMU
QEMU_MODELS = {
    "kept": (3, 12, 12),
    "se": (3, 12, 12),
    "pad": (3, 12, 12),
    "softmax": (3, 12, 12),
    "seq": (16, 6),
    "nhwc": (12, 12, 3),
}


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
@pytest.mark.parametrize("name", list(QEMU_MODELS))
def test_models_under_qemu_equal_the_host_build(tmp_path, name):
    """The firmware (Cortex-M4, mps2-an386) runs 20 inputs of each model: equal to the host build, which equals
    onnxruntime (the tests above)."""
    from divqat_tvm.oracle.backend_device import QemuOracle

    kw = {"keep_activations": True} if name == "kept" else {}
    p = coverage_model(name, tmp_path / f"{name}.onnx", input_shape=QEMU_MODELS[name], **kw)
    out = tmp_path / name
    scheme = "float" if name == "softmax" else "fixed"
    compile_onnx(p, out, requant=scheme, target="mps2-an386", core="cortex-m4")
    h = HostModel(out)
    xq = h.quantize_input(np.random.default_rng(9).standard_normal((20, *QEMU_MODELS[name])).astype(np.float32))
    want = h.run(xq).reshape(20, -1)
    with QemuOracle(out, board="mps2-an386", transfer="shared", instances=1) as dev:
        got = np.stack([r.logits for r in dev.run_int8(xq.reshape(20, -1))])
    assert int((got != want).sum()) == 0


# ---------------------------------------------------------------- Softmax along any axis
SOFTMAX_CASES = {"last": (-1, (1, 10)), "channels": (1, (1, 4, 3, 3)), "height": (2, (1, 4, 5, 3))}


def _softmax_model(tmp_path: Path, axis: int, shape: tuple[int, ...]) -> Path:
    from coverage_models import QDQBuilder

    b = QDQBuilder(shape, 0.1, 3)
    y = b.qop("Softmax", [b.x], 1 / 256, -128, name="probs", axis=axis)
    return b.save(tmp_path / "softmax.onnx", y)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_any_axis_bit_exact_with_onnxruntime(tmp_path, case):
    """onnxruntime fuses DQ → Softmax → Q into QLinearSoftmax for any axis; `float` reproduces it (float table of
    exps, float32 row sum in order), 1,000 inputs."""
    axis, shape = SOFTMAX_CASES[case]
    p = _softmax_model(tmp_path, axis, shape)
    x = (np.random.default_rng(4).standard_normal((N, *shape[1:])) * 4).astype(np.float32)
    out, h = _host(p, tmp_path / "f", "float", x)
    assert int((out != run_reference(import_onnx(p), h.quantize_input(x), "float")).sum()) == 0
    ort = ort_reference.int8_outputs(ort_reference.session(p), x, 1 / 256, -128, batch=1)
    assert int((out != ort).sum()) == 0
    assert len(np.unique(ort)) > 50


@pytest.mark.slow
def test_softmax_fixed_scheme_is_tflite_or_refused(tmp_path):
    """`fixed`: TFLite's softmax along the last axis (output 1/256, −128; channels of an NCHW tensor are the last
    axis once the graph runs NHWC); another axis is refused at compile."""
    from divqat_tvm.errors import CompileError

    p = _softmax_model(tmp_path, -1, (1, 10))
    x = (np.random.default_rng(4).standard_normal((N, 10)) * 4).astype(np.float32)
    out, h = _host(p, tmp_path / "fx", "fixed", x)
    assert int((out != run_reference(import_onnx(p), h.quantize_input(x), "fixed")).sum()) == 0
    assert h.manifest["output"]["kind"] == "probabilities"
    p4 = _softmax_model(tmp_path, 2, (1, 4, 5, 3))
    with pytest.raises(CompileError, match="requant float"):
        compile_onnx(p4, tmp_path / "fx4", requant="fixed")
