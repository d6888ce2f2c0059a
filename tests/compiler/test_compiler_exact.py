"""Bit-exactness of the host-built C: each requantization scheme against its own reference.

"fixed" (TFLite/CMSIS-NN fixed point) is checked against the numpy interpreter in compiler/reference.py;
"float" (MLAS arithmetic) against the same interpreter and against onnxruntime run with
ort_reference.ORT_OPTIONS (ORT_ENABLE_ALL, 1 thread, CPU) on ort_reference.session's fusable graph. The fixed-vs-onnxruntime mismatch count is
recorded (the schemes round differently by design).
"""

from __future__ import annotations

import platform

import pytest
import torch

from divqat_tvm.compiler import ort_reference

MODELS = ["qs", "qs_avgpool", "resnet8", "vgg", "dscnn"]
# Every model must match onnxruntime exactly. ort_reference.session makes onnxruntime fuse every op (on x86 a
# branch point of an int8 QDQ graph otherwise leaves float32 Conv/Add in place: see ort_reference), and the
# float scheme's QLinearAdd/QLinearAveragePool round in x86's uint8 domain (requant.ORT_U8_OFFSET).


def _get(compiler_models, name):
    if name not in compiler_models:
        pytest.skip(f"registry model {name} not available")
    return compiler_models[name]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scheme", ["fixed", "float"])
def test_host_build_equals_numpy_reference(compiler_models, outputs, name, scheme, record_property) -> None:
    _get(compiler_models, name)
    out, ref = outputs.host(name, scheme), outputs.reference(name, scheme)
    mismatches = int((out != ref).sum())
    record_property("mismatches", mismatches)
    assert out.shape == (len(outputs.x), 10)
    assert mismatches == 0


@pytest.mark.parametrize("name", MODELS)
def test_float_scheme_against_onnxruntime(compiler_models, outputs, name, record_property) -> None:
    _get(compiler_models, name)
    out, ort_q = outputs.host(name, "float"), outputs.onnxruntime(name)
    mismatches = int((out != ort_q).sum())
    record_property("float_vs_ort_mismatches", mismatches)
    print(f"{name}: float scheme vs onnxruntime ({ort_reference.ORT_OPTIONS}): {mismatches}/{out.size}")
    assert mismatches == 0


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_reference_runs_only_integer_kernels(compiler_models, name, tmp_path) -> None:
    """The reference is onnxruntime's integer kernels: no float Conv/Gemm/Add/pool is left between Q/DQ."""
    import onnx

    m = _get(compiler_models, name)
    ort_reference.session(m.onnx_path, optimized_path=tmp_path / "opt.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert not ops & {"Conv", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool"}, ops
    assert {"QLinearConv", "QGemm"} <= ops
    if name != "vgg" and name != "dscnn":  # the residual models
        assert "QLinearAdd" in ops
    if platform.machine().lower() in ("x86_64", "amd64"):
        # without the rewrites, x86 onnxruntime leaves the residual blocks' ops in float32 (see ort_reference)
        ort_reference.session(m.onnx_path, fusable=False, optimized_path=tmp_path / "raw.onnx")
        raw = {n.op_type for n in onnx.load(str(tmp_path / "raw.onnx")).graph.node}
        assert ("Conv" in raw) == (name not in ("vgg", "dscnn"))


@pytest.mark.parametrize("name", MODELS)
def test_fixed_scheme_against_onnxruntime_is_reported(compiler_models, outputs, name, record_property) -> None:
    _get(compiler_models, name)
    out, ort_q = outputs.host(name, "fixed"), outputs.onnxruntime(name)
    mismatches = int((out != ort_q).sum())
    agreement = float((out.argmax(1) == ort_q.argmax(1)).mean())
    record_property("fixed_vs_ort_mismatches", mismatches)
    print(f"{name}: fixed scheme vs onnxruntime: {mismatches}/{out.size}, top-1 agreement {agreement:.4f}")
    assert agreement >= 0.95


@pytest.mark.parametrize("name", ["resnet8", "vgg", "dscnn"])
@pytest.mark.parametrize("scheme", ["fixed", "float"])
def test_top1_agrees_with_torch_student(compiler_models, outputs, name, scheme, record_property) -> None:
    m = _get(compiler_models, name)
    out = outputs.host(name, scheme)
    with torch.no_grad():
        logits = m.student(torch.from_numpy(outputs.x)).numpy()
    agreement = float((out.argmax(1) == logits.argmax(1)).mean())
    record_property("top1_agreement", agreement)
    assert agreement >= 0.98
