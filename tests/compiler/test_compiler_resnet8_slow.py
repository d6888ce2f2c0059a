"""ResNet-8 at its real input size (3x32x32, MLPerf Tiny shape), compiled with the default "fixed" scheme
(the "float" scheme is covered at 3x16x16 in test_compiler_exact.py): bit-exact with
the numpy reference on 1,000 inputs, top-1 agreement with the torch student, arena at the liveness bound,
and an arm build for the default core."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.onnx_import import import_onnx
from divqat_tvm.compiler.reference import run_reference

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_resnet8_32x32_bit_exact_and_footprint(tmp_path, scheme: str = "fixed") -> None:
    import compiler_models as cm

    from divqat_tvm.compiler.api import compile_model

    path, student = cm.registry_export(tmp_path / "resnet8.onnx", "resnet8", (3, 32, 32))
    out = tmp_path / "build"
    cm = compile_model(path, "cortex-m7", out, requant=scheme)
    manifest, fp = cm.manifest, cm.footprint
    host = HostModel(out)
    x = np.random.default_rng(7).standard_normal((1000, 3, 32, 32)).astype(np.float32)
    xq = host.quantize_input(x)
    y = host.run(xq)
    graph = import_onnx(path)
    assert int((y != run_reference(graph, xq, scheme)).sum()) == 0
    with torch.no_grad():
        agreement = float((y.argmax(1) == student(torch.from_numpy(x)).numpy().argmax(1)).mean())
    assert agreement >= 0.98
    spec = importlib.util.spec_from_file_location("arena_bound", REPO / "scripts" / "arena_bound.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    assert (
        manifest["arena_bytes"] == ab.ir_peak_bytes(*ab.compiled_graph(graph, manifest))[0]
    )  # NHWC inside, kernel scratch
    assert fp.weight_bytes == manifest["weight_bytes"] and fp.code_bytes > 0
    assert json.loads((out / "footprint.json").read_text())["core"] == "cortex-m7"
