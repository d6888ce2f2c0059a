"""Issue #15 (5, 6): empty or truncated model files are one line and exit code 2 from the CLI; an unsupported
ONNX node is named; the compiled folder carries a CMakeLists.txt that builds it as a static library."""

from __future__ import annotations

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
