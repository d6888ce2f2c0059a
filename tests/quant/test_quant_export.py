"""ONNX QDQ export: the contract's format, onnx.checker, and onnxruntime agreeing with the torch student."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from divqat_tvm.data import load_dataset
from divqat_tvm.models import build_model
from divqat_tvm.quant import primitives as P
from divqat_tvm.quant.config import QuantConfig
from divqat_tvm.quant.export import compare_with_ort, export_onnx, ort_session, to_onnx
from divqat_tvm.quant.prepare import quantize_model

torch.set_num_threads(1)


def _student(arch: str, dataset: str):
    torch.manual_seed(0)
    train = load_dataset(dataset, "train")
    test = load_dataset(dataset, "test")
    c, h, _ = train.info.input_shape
    model = build_model(arch, c, train.info.num_classes, h)
    # give BN real statistics so the folded weights are not trivial
    model.train()
    with torch.no_grad():
        xs, _ = train.tensors()
        for i in range(0, 256, 64):
            model(xs[i : i + 64])
    model.eval()
    student = quantize_model(model, QuantConfig(method="ptq"), [xs[i : i + 64] for i in range(0, 512, 64)])
    return student.eval(), test.tensors()[0], (c, h, h)


@pytest.mark.parametrize("arch", ["resnet8", "tinycnn", "dscnn"])
def test_export_checker_format_and_ort_agreement(arch: str, tmp_path) -> None:
    student, x_test, shape = _student(arch, "synthetic:3x16x16:10")
    path = export_onnx(student, tmp_path / "m.onnx", shape, meta={"arch": arch})
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 13
    g = model.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    weights = [v for k, v in inits.items() if k.endswith("_weight_quantized")]
    biases = [v for k, v in inits.items() if k.endswith("_bias_quantized")]
    assert weights and all(w.dtype == np.int8 and w.min() >= -127 for w in weights)
    assert biases and all(b.dtype == np.int32 for b in biases)
    for node in g.node:
        if node.op_type in ("Conv", "Gemm"):
            assert all(i for i in node.input)  # x, DQ(weight), DQ(bias)
    # bias scale is exactly s_in * s_w (float32), checked on the first conv
    first = next(n for n in g.node if n.op_type == "Conv").name[: -len("_conv")]
    np.testing.assert_array_equal(
        inits[f"{first}_bias_scale"], P.bias_scale_np(inits["input_fq_scale"], inits[f"{first}_weight_scale"])
    )
    r = compare_with_ort(student, path, x_test)
    assert r["agreement"] >= 0.995, r
    # dynamic batch
    out = ort_session(path).run(["logits"], {"input": x_test[:3].numpy()})[0]
    assert out.shape == (3, 10)


def test_export_refuses_uncalibrated_student() -> None:
    from divqat_tvm.errors import DivqatError

    s = quantize_model(build_model("tinycnn", 1, 10, 12))
    with pytest.raises(DivqatError, match="uncalibrated"):
        to_onnx(s, (1, 12, 12))
