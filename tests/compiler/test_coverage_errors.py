"""Issue #15 (5, 6): empty or truncated model files are one line and exit code 2 from the CLI; an unsupported
ONNX node is named; the compiled folder carries a CMakeLists.txt that builds it as a static library."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from coverage_models import QDQBuilder  # noqa: E402

AD01 = Path("/work/shared/models/ad01_int8.tflite")


@pytest.mark.parametrize("name", ["m.onnx", "m.tflite"])
def test_empty_file_is_one_line_exit_2(tmp_path, capsys, name):
    p = tmp_path / name
    p.write_bytes(b"")
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is empty (0 bytes)" in err and len(err.splitlines()) == 1


def test_truncated_onnx_is_one_line_exit_2(tmp_path, capsys):
    b = QDQBuilder((1, 3, 8, 8))
    full = b.save(tmp_path / "full.onnx", b.qop("AveragePool", [b.x], 0.05, 0, kernel_shape=[2, 2], strides=[2, 2]))
    p = tmp_path / "cut.onnx"
    p.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and len(err.splitlines()) == 1


@pytest.mark.needs_tools(needs_files=(AD01,))
def test_truncated_tflite_is_one_line_exit_2(tmp_path, capsys):
    p = tmp_path / "cut.tflite"
    p.write_bytes(AD01.read_bytes()[:20000])
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and len(err.splitlines()) == 1


def test_unsupported_onnx_node_is_named(tmp_path, capsys):
    b = QDQBuilder((1, 3, 8, 8))
    p = b.save(tmp_path / "lrn.onnx", b.qop("LRN", [b.x], 0.05, 0, name="my_lrn", size=3))
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "'LRN'" in err and "'my_lrn'" in err


@pytest.mark.needs_tools("cmake", needs_files=(AD01,))
def test_cmake_lists_builds_the_library(tmp_path):
    from divqat_tvm.compiler.tflite_import import compile_tflite

    out = tmp_path / "ad01"
    compile_tflite(AD01, out, prefix="ad01")
    text = (out / "CMakeLists.txt").read_text()
    assert "add_library(ad01 STATIC model.c kernels.c)" in text
    assert "target_include_directories(ad01 PUBLIC" in text
    build = tmp_path / "build"
    subprocess.run(
        ["cmake", "-S", str(out), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True
    )
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    assert (build / "libad01.a").is_file()
    assert shutil.which("cmake")
    assert np.int8  # keep numpy import used


# ---------------------------------------------------------------- errors name the ONNX node, never a TVM variable
def _compile_error(p: Path) -> str:
    from divqat_tvm.compiler.onnx_import import import_onnx
    from divqat_tvm.errors import CompileError

    with pytest.raises(CompileError) as e:
        import_onnx(p)
    text = f"{e.value.problem} {e.value.fix}"
    assert not re.search(r"\blv\d*\b|\bgv\d*\b|relax\.|R\.|call_tir", text), text  # no Relax/TVM names
    assert e.value.fix
    return e.value.problem


def _label(p: Path, name: str) -> str:
    """'<name>' (<op type>, node #<index>) as the importer writes it."""
    import onnx

    nodes = list(onnx.load(str(p)).graph.node)
    i = next(k for k, n in enumerate(nodes) if n.name == name)
    return f"ONNX node '{name}' ({nodes[i].op_type}, node #{i})"


def test_mul_by_a_constant_names_the_node(tmp_path):
    b = QDQBuilder((1, 3, 4, 4))
    c = b.const(np.full((1, 3, 1, 1), 5, np.int8), "k")
    cdq = b.dq((c, b.const(np.array(0.1, np.float32)), b.const(np.array(0, np.int8))))
    p = b.save(tmp_path / "m.onnx", b.qop("Mul", [b.x], 0.05, 0, extra=[cdq], name="scale_by_k"))
    msg = _compile_error(p)
    assert _label(p, "scale_by_k") in msg and "constant" in msg


def test_concat_along_batch_names_the_node(tmp_path):
    b = QDQBuilder((1, 3, 4, 4))
    p = b.save(tmp_path / "c.onnx", b.qop("Concat", [b.x, b.x], 0.05, 3, name="cat0", axis=0))
    msg = _compile_error(p)
    assert _label(p, "cat0") in msg and "batch" in msg


def test_transpose_of_the_batch_axis_names_the_node(tmp_path):
    b = QDQBuilder((1, 3, 4, 4))
    p = b.save(tmp_path / "t.onnx", b.qop("Transpose", [b.x], 0.05, 3, name="swap", perm=[1, 0, 2, 3]))
    msg = _compile_error(p)
    assert _label(p, "swap") in msg and "batch" in msg


def test_conv1d_names_the_node(tmp_path):
    b = QDQBuilder((1, 3, 8))
    rng = np.random.default_rng(0)
    from onnx import helper

    w = [b.const(rng.integers(-127, 128, (4, 3, 3)).astype(np.int8)), b.const(np.full(4, 0.01, np.float32))]
    b.nodes.append(helper.make_node("DequantizeLinear", [*w, b.const(np.zeros(4, np.int8))], ["wdq"], axis=0))
    wdq = "wdq"
    p = b.save(tmp_path / "c1.onnx", b.qop("Conv", [b.x], 0.05, 0, extra=[wdq], name="conv1d", kernel_shape=[3]))
    msg = _compile_error(p)
    assert _label(p, "conv1d") in msg and "1-D" in msg


def test_quantized_constant_names_the_quantize_node(tmp_path):
    b = QDQBuilder((1, 3, 4, 4))
    k = b.quantize(b.const(np.full((1, 3, 4, 4), 0.5, np.float32)), 0.01, 0)
    p = b.save(tmp_path / "k.onnx", b.qop("Add", [b.x, k], 0.05, 0, name="add_k"))
    msg = _compile_error(p)
    assert "quantizes a constant" in msg and "QuantizeLinear" in msg


def test_unsupported_node_is_refused_with_its_index(tmp_path):
    b = QDQBuilder((1, 10))
    p = b.save(tmp_path / "s.onnx", b.qop("LogSoftmax", [b.x], 0.1, 0, name="logp", axis=1))
    msg = _compile_error(p)
    assert "'LogSoftmax'" in msg and "'logp'" in msg and "node #" in msg


def test_weight_scales_on_the_wrong_axis_name_the_node(tmp_path):
    """Per-channel weight scales along the input channels (DequantizeLinear's default axis 1)."""
    b = QDQBuilder((1, 3, 8, 8))
    w = (b.const(np.ones((4, 3, 3, 3), np.int8)), b.const(np.full(3, 0.01, np.float32)), b.const(np.zeros(3, np.int8)))
    p = b.save(tmp_path / "bad.onnx", b.qop("Conv", [b.x], 0.05, 0, extra=[b.dq(w)], name="c", kernel_shape=[3, 3]))
    msg = _compile_error(p)
    assert _label(p, "c") in msg and "axis 1" in msg


def test_model_the_frontend_rejects_is_reported_without_tvm_text(tmp_path):
    """A DequantizeLinear whose 4 scales do not fit its axis (size 3): TVM's frontend fails; the error is the
    file and onnx's words or the exception type, never TVM's IR."""
    b = QDQBuilder((1, 3, 8))
    w = (b.const(np.ones((4, 3, 3), np.int8)), b.const(np.full(4, 0.01, np.float32)), b.const(np.zeros(4, np.int8)))
    p = b.save(tmp_path / "bad.onnx", b.qop("Conv", [b.x], 0.05, 0, extra=[b.dq(w)], name="c", kernel_shape=[3]))
    msg = _compile_error(p)
    assert "bad.onnx" in msg
