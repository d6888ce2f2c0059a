"""Issue #15 (2): AveragePool with partial windows (ceil_mode=1, count_include_pad=0) and uint8 activations.

ceil_mode=1 with count_include_pad=1 (PyTorch's export default): the spec and PyTorch divide a partial edge
window by the window clipped to the padded input. onnxruntime's fused QLinearAveragePool (ORT_ENABLE_ALL)
divides it by the full kernel size; we follow the spec and test against onnxruntime with optimisations
disabled (bit-exact) and onnx.reference (within one level: it rounds in its own float arithmetic)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.generate import compile_onnx
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.onnx_import import import_onnx
from divqat_tvm.compiler.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from coverage_models import QDQBuilder, onnx_reference_run, ort_session, run_float, to_codes  # noqa: E402

S_OUT, ZP_OUT = 0.04, -5
N = 1000


def _pool_model(tmp_path: Path, h: int, ceil: int, include: int) -> Path:
    b = QDQBuilder((1, 3, h, h), 0.05, 3)
    y = b.qop(
        "AveragePool",
        [b.x],
        S_OUT,
        ZP_OUT,
        name="pool",
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        ceil_mode=ceil,
        count_include_pad=include,
    )
    return b.save(tmp_path / f"pool_{h}_{ceil}_{include}.onnx", y)


def _run(tmp_path: Path, p: Path, scheme: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    compile_onnx(p, tmp_path / scheme, requant=scheme)
    h = HostModel(tmp_path / scheme)
    xq = h.quantize_input(x)
    return h.run(xq).astype(np.int64), run_reference(import_onnx(p), xq, scheme).astype(np.int64)


@pytest.fixture(scope="module")
def x10() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((N, 3, 10, 10)) * 2).astype(np.float32)


def test_ceil_mode_count_include_pad_follows_the_spec(tmp_path, x10):
    p = _pool_model(tmp_path, 10, 1, 1)
    assert import_onnx(p).output_tensor.shape == (1, 3, 6, 6)  # partial windows at the bottom and right edges
    unopt = to_codes(run_float(ort_session(p, optimized=False), x10), S_OUT, ZP_OUT)
    spec = to_codes(onnx_reference_run(p, x10), S_OUT, ZP_OUT)
    fused = to_codes(run_float(ort_session(p, optimized=True), x10), S_OUT, ZP_OUT)
    for scheme in ("float", "fixed"):
        out, ref = _run(tmp_path, p, scheme, x10)
        assert int((out != ref).sum()) == 0, scheme
        assert np.abs(out - spec).max() <= 1, scheme
    out, _ = _run(tmp_path, p, "float", x10)
    assert int((out != unopt).sum()) == 0  # bit-exact with onnxruntime, graph optimisations disabled
    # onnxruntime's fused kernel divides the last row/column's windows by 9 instead of 6 (and the corner by 4):
    assert np.abs(fused[:, :, 5, :] - spec[:, :, 5, :]).max() > 1
    assert int((fused[:, :, :5, :5] != out[:, :, :5, :5]).sum()) < 0.05 * out[:, :, :5, :5].size


@pytest.mark.parametrize("h,ceil", [(9, 0), (10, 1)])
def test_count_include_pad_0_bit_exact_with_onnxruntime(tmp_path, x10, h, ceil):
    p = _pool_model(tmp_path, h, ceil, 0)
    x = x10[:, :, :h, :h].copy()
    fused = to_codes(run_float(ort_session(p, optimized=True), x), S_OUT, ZP_OUT)
    spec = to_codes(onnx_reference_run(p, x), S_OUT, ZP_OUT)
    for scheme in ("float", "fixed"):
        out, ref = _run(tmp_path, p, scheme, x)
        assert int((out != ref).sum()) == 0, scheme
        assert np.abs(out - spec).max() <= 1, scheme
    out, _ = _run(tmp_path, p, "float", x)
    assert int((out != fused).sum()) == 0  # the fused QLinearAveragePool excludes the padding correctly


def test_uint8_activations_compile_bit_exact_with_onnxruntime(tmp_path):
    """quantize_static with QUInt8 activations (its default): imported as int8 with zero points − 128."""
    import compiler_models as cm
    import onnxruntime.quantization as oq

    from divqat_tvm.compiler import ort_reference

    orig = oq.quantize_static

    def qs(*a, **k):
        return orig(*a, **{**k, "activation_type": oq.QuantType.QUInt8})

    oq.quantize_static = qs
    try:
        p = cm.quantize_static_model(tmp_path / "qs_u8.onnx", (3, 16, 16))
    finally:
        oq.quantize_static = orig
    x = np.random.default_rng(1).standard_normal((N, 3, 16, 16)).astype(np.float32)
    for scheme in ("float", "fixed"):
        compile_onnx(p, tmp_path / scheme, requant=scheme)
        h = HostModel(tmp_path / scheme)
        out = h.run(h.quantize_input(x)).astype(np.int64)
        assert int((out != run_reference(import_onnx(p), h.quantize_input(x), scheme)).sum()) == 0
    m = h.manifest["output"]
    ref = ort_reference.int8_outputs(ort_reference.session(p), x, m["scale"], m["zero_point"])
    compile_onnx(p, tmp_path / "f2", requant="float")
    h = HostModel(tmp_path / "f2")
    assert int((h.run(h.quantize_input(x)).astype(np.int64) != ref).sum()) == 0
