"""TFLite importer + numpy reference against LiteRT's reference kernels (BUILTIN_REF), the independent oracle.

Fast: no TVM build here (tests/compiler/test_tflite_host.py compiles)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.ops import softmax as sm
from divqat_tvm.compiler.reference import run_reference
from divqat_tvm.compiler.tflite_import import import_tflite, is_tflite, out_size, output_kind, same_padding
from divqat_tvm.errors import CompileError

sys.path.insert(0, str(Path(__file__).parent))
import tflite_testmodels as tm  # noqa: E402

MLPERF = Path("/work/shared/models/mlperf-tiny-resnet8-int8.tflite")
if not MLPERF.is_file():
    MLPERF = Path(__file__).resolve().parents[3] / "shared" / "models" / "mlperf-tiny-resnet8-int8.tflite"
needs_mlperf = pytest.mark.needs_tools(needs_files=(MLPERF,))

# ../shared/models/README.md: TFLite Micro and LiteRT BUILTIN_REF outputs.
LCG_EXPECTED = [-128, -128, -123, -118, -128, -128, 90, -128, -105, -128]
ZERO_EXPECTED = [-48, -128, -127, -108, -48, -127, -71, -125, -116, -127]


def lcg_image() -> np.ndarray:
    """README's LCG input: x = 12345; x = (x·1664525 + 1013904223) mod 2³²; byte = (x >> 24) − 128, NHWC."""
    x, out = 12345, []
    for _ in range(32 * 32 * 3):
        x = (x * 1664525 + 1013904223) % 2**32
        out.append((x >> 24) - 128)
    return np.array(out, np.int8).reshape(1, 32, 32, 3)


def litert(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
    it.allocate_tensors()
    return it


def litert_run(it, xs: np.ndarray) -> np.ndarray:
    """Run int8 inputs [N, 1, ...] one by one through a LiteRT interpreter; int8 outputs [N, ...]."""
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in xs:
        it.set_tensor(i, x)
        it.invoke()
        out.append(it.get_tensor(o).copy())
    return np.stack(out)


def write(tmp_path: Path, name: str, buf: bytes) -> Path:
    p = tmp_path / f"{name}.tflite"
    p.write_bytes(buf)
    return p


@needs_mlperf
def test_mlperf_graph_structure():
    g = import_tflite(MLPERF)
    kinds = [op.kind for op in g.ops]
    assert kinds.count("conv2d") == 9 and kinds.count("add") == 3
    assert kinds[-4:] == ["avgpool_tflite", "reshape", "dense", "softmax"]
    assert g.input_tensor.shape == (1, 32, 32, 3) and g.input_tensor.layout == "NHWC"
    assert (g.input_tensor.scale, g.input_tensor.zero_point) == (1.0, -128)
    assert (g.output_tensor.scale, g.output_tensor.zero_point) == (1.0 / 256, -128)
    assert output_kind(g) == "probabilities"
    from divqat_tvm.compiler.graph import macs

    assert sum(macs(g, op) for op in g.ops) == 12_501_632  # README: 12,501,632 MACs


@needs_mlperf
def test_mlperf_reference_matches_readme_and_litert():
    g = import_tflite(MLPERF)
    assert run_reference(g, lcg_image()).ravel().tolist() == LCG_EXPECTED
    assert run_reference(g, np.full((1, 32, 32, 3), -128, np.int8)).ravel().tolist() == ZERO_EXPECTED
    xs = np.random.default_rng(7).integers(-128, 128, (12, 1, 32, 32, 3)).astype(np.int8)
    ref = np.stack([run_reference(g, x) for x in xs])
    assert int((ref != litert_run(litert(MLPERF), xs)).sum()) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zoo_reference_matches_litert(tmp_path, seed):
    """Depthwise ×2 SAME s2 RELU6, SAME conv, 1×1 conv, ADD, max pool SAME, padded avg pool, per-channel FC, softmax β."""
    p = write(tmp_path, f"zoo{seed}", tm.zoo_model(seed))
    g = import_tflite(p)
    assert [op.kind for op in g.ops] == [
        "conv2d",
        "conv2d",
        "conv2d",
        "add",
        "maxpool",
        "avgpool_tflite",
        "reshape",
        "dense",
        "softmax",
    ]
    assert g.ops[0].groups == 3 and g.ops[0].padding == (1, 1, 1, 1) and g.ops[0].act_max < 127  # RELU6 clamps
    xs = np.random.default_rng(seed).integers(-128, 128, (150, 1, 9, 9, 3)).astype(np.int8)
    ref = np.stack([run_reference(g, x) for x in xs])
    expected = litert_run(litert(p), xs)
    assert int((ref != expected).sum()) == 0
    assert len(np.unique(expected)) > 5  # the comparison is not between two constant outputs


@pytest.mark.parametrize("scale,beta", [(0.3, 1.0), (0.05, 2.0), (1.5, 1.0), (0.17185351, 1.0), (0.02, 0.5)])
def test_softmax_reference_matches_litert(tmp_path, scale, beta):
    p = write(tmp_path, "softmax", tm.softmax_model(scale, beta))
    rng = np.random.default_rng(3)
    xs = rng.integers(-128, 128, (400, 1, 1, 1, 10)).astype(np.int8)
    xs[:100] = np.clip(rng.integers(-6, 7, (100, 1, 1, 1, 10)) + rng.integers(-100, 100, (100, 1, 1, 1, 1)), -128, 127)
    ref = sm.softmax_int8_reference(xs, sm.softmax_params(beta, float(np.float32(scale))))
    assert int((ref != litert_run(litert(p), xs)).sum()) == 0


def test_gemmlowp_constants():
    """exp(0) = 1 (saturated), exp(−1/4·k) and 1/(1+x) near their real values."""
    q526 = 1 << 26
    a = np.array([0, -q526 // 4, -q526, -4 * q526, -10 * q526])
    e = sm.exp_on_negative_values(a) / 2**31
    assert np.allclose(e, np.exp([0, -0.25, -1, -4, -10]), atol=2e-7)
    x = np.array([0, 1 << 30, (1 << 31) - 1])
    assert np.allclose(sm.one_over_one_plus_x_for_x_in_0_1(x) / 2**31, 1 / (1 + x / 2**31), atol=1e-7)
    assert sm.count_leading_zeros(np.array([1, 2**19, 2**31 - 1, 0])).tolist() == [31, 12, 1, 32]


def test_padding_arithmetic():
    assert out_size("SAME", 9, 3, 2, 1) == 5 and out_size("VALID", 9, 3, 2, 1) == 4
    assert same_padding(9, 3, 2, 1, 5) == (1, 1)
    assert same_padding(32, 3, 2, 1, 16) == (0, 1)  # MLPerf's stride-2 convs pad only after
    assert same_padding(5, 1, 1, 1, 5) == (0, 0)


def test_unsupported_operator_names_op_and_index(tmp_path):
    s = tm.ModelSpec()
    x = s.add(tm.T((1, 4, 4, 2), [0.1], [0]))
    y = s.add(tm.T((1, 4, 4, 2), [0.1], [0]))
    z = s.add(tm.T((1, 4, 4, 2), [0.1], [0]))
    s.ops.append(tm.O(tm.B.ADD, [x, x], [y], tm.add_opts(0)))
    s.ops.append(tm.O(tm.B.LOGISTIC, [y], [z]))
    p = write(tmp_path, "bad", tm.serialize(s, [x], [z]))
    with pytest.raises(CompileError, match=r"LOGISTIC \(operator index 1\)"):
        import_tflite(p)


def test_float_model_and_foreign_file_are_clear_errors(tmp_path):
    s = tm.ModelSpec()
    x = s.add(tm.T((1, 4, 4, 2), [0.1], [0]))
    y = s.add(tm.T((1, 4, 4, 2), [], [], dtype="int32"))
    s.ops.append(tm.O(tm.B.ADD, [x, x], [y], tm.add_opts(0)))
    with pytest.raises(CompileError, match="not int8"):
        import_tflite(write(tmp_path, "i32", tm.serialize(s, [x], [y])))
    other = tmp_path / "model.tflite"
    other.write_bytes(b"\x00" * 64)
    assert is_tflite(other)
    with pytest.raises(CompileError, match="not a TFLite flatbuffer"):
        import_tflite(other)
    with pytest.raises(CompileError, match="does not exist"):
        import_tflite(tmp_path / "missing.tflite")
