"""Every user-fixable failure is a clear error: unsupported operator (type and node), a model too large
for the board (the numbers, before any arm build), an unknown target (the known names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from divqat_tvm.compiler.onnx_import import import_onnx
from divqat_tvm.errors import CompileError, TargetError


def _qdq_model_with(op_type: str, path: Path) -> Path:
    """input → Q → DQ → <op_type> → Q → DQ → logits."""
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q0"], name="in_q"),
        helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"], name="in_dq"),
        helper.make_node(op_type, ["d0"], ["y"], name="the_strange_node"),
        helper.make_node("QuantizeLinear", ["y", "s", "z"], ["q1"], name="out_q"),
        helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["logits"], name="out_dq"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])],
        [s, z],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_unsupported_operator_names_type_and_node(tmp_path) -> None:
    path = _qdq_model_with("Softsign", tmp_path / "softsign.onnx")
    with pytest.raises(CompileError) as e:
        import_onnx(path)
    assert "Softsign" in e.value.problem and "the_strange_node" in e.value.problem
    assert e.value.fix


def test_missing_model_file(tmp_path) -> None:
    with pytest.raises(CompileError, match="does not exist"):
        import_onnx(tmp_path / "nope.onnx")


def test_unknown_requant_scheme(compiler_models, tmp_path) -> None:
    from divqat_tvm.compiler.generate import compile_onnx

    with pytest.raises(CompileError, match="requantization scheme 'double'"):
        compile_onnx(compiler_models["qs"].onnx_path, tmp_path / "x", requant="double")


def test_model_too_large_for_board_fails_before_building(tmp_path) -> None:
    """A conv net at 3x96x96 with 32 channels needs ~590 KB of arena: more than the 320 KB of RAM of
    the STM32F746G-DISCO. The error names the numbers and no arm build is started."""
    import compiler_models as cm

    from divqat_tvm.compiler.api import compile_model

    path = cm.quantize_static_model(tmp_path / "big.onnx", (3, 96, 96), avg_pool=False, wide=32)
    out = tmp_path / "big"
    with pytest.raises(CompileError) as e:
        compile_model(path, "stm32f746g-disco", out)
    msg = e.value.problem
    assert "RAM" in msg and "327,680" in msg and "stm32f746g-disco" in msg
    arena = int(__import__("json").loads((out / "manifest.json").read_text())["arena_bytes"])
    assert f"{arena:,}" in msg
    assert not any(p.name.startswith("arm-") for p in out.iterdir())


def test_flash_check_names_weights_and_code() -> None:
    from divqat_tvm.compiler.library import check_fits
    from divqat_tvm.targets import resolve

    target = resolve("stm32f746g-disco")
    check_fits(target, weight_bytes=500_000, arena_bytes=100_000, code_bytes=20_000)  # fits
    with pytest.raises(CompileError, match=r"flash \(weights 1,040,000 \+ code 20,000\)"):
        check_fits(target, weight_bytes=1_040_000, arena_bytes=1000, code_bytes=20_000)


def test_unknown_target_lists_known_names(compiler_models, tmp_path, capsys) -> None:
    from divqat_tvm.cli import main
    from divqat_tvm.compiler.api import compile_model

    with pytest.raises(TargetError) as e:
        compile_model(compiler_models["qs"].onnx_path, "cortex-m99", tmp_path / "x")
    assert "cortex-m99" in e.value.problem and "cortex-m7" in e.value.fix and "stm32f746g-disco" in e.value.fix
    assert not (tmp_path / "x").exists()
    rc = main(["compile", str(compiler_models["qs"].onnx_path), "--target", "cortex-m99", "--out", str(tmp_path / "y")])
    assert rc == 2
    assert "cortex-m0plus" in capsys.readouterr().err


def test_clip_becomes_the_quantized_activation_range(tmp_path) -> None:
    """Conv → Clip(0, 0.5) → Q(scale 0.01, zp −128): the clamp is [−128, −128 + 50] (TFLite's
    quantized activation range), in the importer and in the compiled C."""
    from divqat_tvm.compiler.generate import compile_onnx
    from divqat_tvm.compiler.host_model import HostModel
    from divqat_tvm.compiler.reference import run_reference

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s_in"),
        numpy_helper.from_array(np.array(0, np.int8), "z_in"),
        numpy_helper.from_array(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_z"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(0.5, np.float32), "hi"),
        numpy_helper.from_array(np.array(0.01, np.float32), "s_out"),
        numpy_helper.from_array(np.array(-128, np.int8), "z_out"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["q0"], name="in_q"),
        helper.make_node("DequantizeLinear", ["q0", "s_in", "z_in"], ["d0"], name="in_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="w_dq", axis=0),
        helper.make_node("Conv", ["d0", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu_half"),
        helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["q1"], name="out_q"),
        helper.make_node("DequantizeLinear", ["q1", "s_out", "z_out"], ["logits"], name="out_dq"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    path = tmp_path / "clip.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    g = import_onnx(path)
    assert (g.ops[0].act_min, g.ops[0].act_max) == (-128, -78)
    compile_onnx(path, tmp_path / "b")
    host = HostModel(tmp_path / "b")
    x = rng.integers(-128, 128, (50, 3, 6, 6)).astype(np.int8)
    y = host.run(x)
    np.testing.assert_array_equal(y, run_reference(g, x))
    assert y.max() == -78 and y.min() == -128
