"""int8 student → ONNX QDQ (opset 13), written node by node with onnx.helper, and checked with onnxruntime.

The format is pinned in docs/contracts.md: float `input` [N,C,H,W] → QuantizeLinear → DequantizeLinear → for
each op: DQ'd inputs, DQ'd int8 per-channel weights (zp 0, axis 0) and int32 bias (scale s_in·s_w), the float
op, optional Relu, QuantizeLinear → DequantizeLinear; the last DequantizeLinear is the float `logits` [N,K].
Integer weights and biases are computed with the same torch functions the fake-quant forward pass uses, so
the ONNX graph holds exactly the values the student computed with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from divqat_tvm.errors import DivqatError
from divqat_tvm.fileio import atomic_write_bytes
from divqat_tvm.quant import primitives as P
from divqat_tvm.quant.fake_quant import ActFakeQuant
from divqat_tvm.quant.prepare import QuantizedModel, quantized_ops
from divqat_tvm.quant.qmodules import QAdd, QAvgPool, QConv2d, QLinear

OPSET = 13
IR_VERSION = 8


class _Builder:
    """Accumulates nodes and initializers; one helper per QDQ pattern."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def qparams(self, prefix: str, fq: ActFakeQuant) -> tuple[str, str]:
        s = self.init(f"{prefix}_scale", np.array(float(fq.scale), dtype=np.float32))
        z = self.init(f"{prefix}_zero_point", np.array(int(fq.zero_point), dtype=np.int8))
        return s, z

    def q_dq(self, x: str, prefix: str, fq: ActFakeQuant, out_name: str | None = None) -> str:
        """Quantize to int8 with `fq`'s qparams and dequantize back: the hand-off between int8 ops."""
        s, z = self.qparams(prefix, fq)
        q = self.node("QuantizeLinear", [x, s, z], f"{prefix}_q")
        return self.node("DequantizeLinear", [q, s, z], out_name or f"{prefix}_dq")

    def weight_bias(self, prefix: str, mod: QConv2d | QLinear, in_fq: ActFakeQuant) -> tuple[str, str]:
        """DQ(int8 per-channel weight) and DQ(int32 bias at s_in·s_w), from the student's own tensors."""
        with torch.no_grad():
            w = mod.weight.detach().cpu().float()
            s_w = P.weight_scales(w, axis=0)
            w_q = P.quantize(w, s_w, torch.zeros_like(s_w, dtype=torch.int32), P.WEIGHT_QMIN, P.WEIGHT_QMAX, axis=0)
            b_s = in_fq.scale.detach().cpu().float() * s_w
            b_q = P.quantize(
                mod.bias.detach().cpu().float(), b_s, torch.zeros_like(b_s, dtype=torch.int32), P.INT32_MIN, P.INT32_MAX
            )
        c = w.shape[0]
        wq = self.init(f"{prefix}_weight_quantized", w_q.numpy().astype(np.int8))
        ws = self.init(f"{prefix}_weight_scale", s_w.numpy().astype(np.float32))
        wz = self.init(f"{prefix}_weight_zero_point", np.zeros(c, dtype=np.int8))
        bq = self.init(f"{prefix}_bias_quantized", b_q.numpy().astype(np.int32))
        bs = self.init(f"{prefix}_bias_scale", b_s.numpy().astype(np.float32))
        bz = self.init(f"{prefix}_bias_zero_point", np.zeros(c, dtype=np.int32))
        wd = self.node("DequantizeLinear", [wq, ws, wz], f"{prefix}_weight", axis=0)
        bd = self.node("DequantizeLinear", [bq, bs, bz], f"{prefix}_bias", axis=0)
        return wd, bd


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def to_onnx(
    student: QuantizedModel, input_shape: tuple[int, int, int], meta: dict[str, Any] | None = None
) -> onnx.ModelProto:
    """Build the QDQ ONNX model of `student` for inputs [N, *input_shape] (N dynamic).

    Raises:
        DivqatError: the student has not been calibrated, or the checker rejects the graph.
    """
    b = _Builder()
    ops = list(quantized_ops(student))
    if any(not bool(o.out_fq.initialized) for o in ops):
        raise DivqatError(
            "the student has uncalibrated activation ranges.", "Calibrate (PTQ) or train (QAT) it before exporting."
        )
    out: dict[str, str] = {}
    last = ops[-1].name
    for op in ops:  # each op.kind names its op.module's type (see quantized_ops), hence the casts below
        n = op.name
        final = "logits" if n == last else None
        xs = [out[i] for i in op.inputs]
        if op.kind == "input":
            out[n] = b.q_dq("input", n, op.out_fq, final)
            continue
        if op.kind == "conv":
            m = cast(QConv2d, op.module)
            wd, bd = b.weight_bias(n, m, op.in_fq[0])
            ph, pw = _pair(m.padding)
            y = b.node(
                "Conv",
                [xs[0], wd, bd],
                f"{n}_conv",
                kernel_shape=list(m.weight.shape[2:]),
                strides=_pair(m.stride),
                pads=[ph, pw, ph, pw],
                dilations=_pair(m.dilation),
                group=m.groups,
            )
            if m.relu:
                y = b.node("Relu", [y], f"{n}_relu")
        elif op.kind == "linear":
            wd, bd = b.weight_bias(n, cast(QLinear, op.module), op.in_fq[0])
            y = b.node("Gemm", [xs[0], wd, bd], f"{n}_gemm", transB=1)
        elif op.kind == "add":
            y = b.node("Add", xs, f"{n}_add")
            if cast(QAdd, op.module).relu:
                y = b.node("Relu", [y], f"{n}_relu")
        elif op.kind == "maxpool":
            p = cast(nn.MaxPool2d, op.module)
            k = _pair(p.kernel_size)
            ph, pw = _pair(p.padding)
            y = b.node(
                "MaxPool",
                xs,
                f"{n}_maxpool",
                kernel_shape=k,
                strides=_pair(p.stride if p.stride is not None else k),
                pads=[ph, pw, ph, pw],
                dilations=_pair(p.dilation),
            )
        elif op.kind == "avgpool":
            pool = cast(QAvgPool, op.module).pool
            if isinstance(pool, nn.AdaptiveAvgPool2d):
                y = b.node("GlobalAveragePool", xs, f"{n}_gap")
            else:
                k = _pair(pool.kernel_size)
                ph, pw = _pair(pool.padding)
                y = b.node(
                    "AveragePool",
                    xs,
                    f"{n}_avgpool",
                    kernel_shape=k,
                    strides=_pair(pool.stride if pool.stride else k),
                    pads=[ph, pw, ph, pw],
                    count_include_pad=int(pool.count_include_pad),
                )
        elif op.kind == "flatten":
            y = b.node("Flatten", xs, f"{n}_flatten", axis=1)
        else:  # pragma: no cover
            raise AssertionError(op.kind)
        out[n] = b.q_dq(y, n, op.out_fq, final)

    with torch.no_grad():
        was = student.training
        student.eval()
        num_classes = int(student(torch.zeros(1, *input_shape, device=next(student.parameters()).device)).shape[1])
        student.train(was)
    graph = helper.make_graph(
        b.nodes,
        "divqat_int8",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *map(int, input_shape)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="divqat-tvm")
    model.ir_version = IR_VERSION
    if meta:
        helper.set_model_props(model, {"divqat_meta": json.dumps(meta, sort_keys=True, default=str)})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:  # pragma: no cover - a bug in this module
        raise DivqatError(f"the exported ONNX graph failed onnx.checker: {e}", "Report this as a bug.") from e
    return model


def export_onnx(
    student: QuantizedModel,
    path: str | os.PathLike[str],
    input_shape: tuple[int, int, int],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the QDQ ONNX model of `student` to `path` atomically."""
    return atomic_write_bytes(path, to_onnx(student, input_shape, meta).SerializeToString())


def ort_session(path_or_model: str | os.PathLike[str] | onnx.ModelProto):
    """The reference onnxruntime session of the contract: ORT_ENABLE_ALL, 1 intra-op thread, CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    src = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else os.fspath(path_or_model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_logits(session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the session over `x` in batches; float32 logits [N, K]."""
    outs = [
        session.run(["logits"], {"input": np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs, axis=0)


@torch.no_grad()
def compare_with_ort(
    student: QuantizedModel, path_or_model: str | os.PathLike[str] | onnx.ModelProto, x: torch.Tensor
) -> dict[str, float]:
    """Top-1 agreement and max |logit difference| between the torch fake-quant student and onnxruntime.

    Returns:
        {"agreement": fraction of inputs with the same argmax, "max_abs_logit_diff": float, "n": count}.
    """
    was = student.training
    student.eval()
    dev = next(student.parameters()).device
    t = torch.cat([student(x[i : i + 256].to(dev)).cpu() for i in range(0, len(x), 256)]).numpy()
    student.train(was)
    o = ort_logits(ort_session(path_or_model), x.cpu().numpy())
    return {
        "agreement": float((t.argmax(1) == o.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(t - o).max()),
        "n": int(len(x)),
    }
