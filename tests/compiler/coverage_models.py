"""Small hand-built QDQ ONNX models for the coverage tests (helpers, not tests): float input → Q → DQ → ops → Q → DQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class QDQBuilder:
    """Builds a QDQ graph node by node. Activations are (name, scale, zero point) of an int8 (or uint8) Q output."""

    def __init__(self, input_shape: tuple[int, ...], in_scale: float = 0.05, in_zp: int = 3, dtype=np.int8) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dtype = dtype
        self.n = 0
        self.input_shape = input_shape
        self.x = self.quantize("input", in_scale, in_zp)

    def _name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, arr: np.ndarray, stem: str = "c") -> str:
        name = self._name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def quantize(self, src: str, scale: float, zp: int, dtype=None) -> tuple[str, float, int]:
        dtype = dtype or self.dtype
        s = self.const(np.array(scale, np.float32), "scale")
        z = self.const(np.array(zp, dtype), "zp")
        out = self._name("q")
        self.nodes.append(helper.make_node("QuantizeLinear", [src, s, z], [out], name=self._name("Q")))
        return (out, s, z)

    def dq(self, q: tuple[str, str, str]) -> str:
        out = self._name("dq")
        self.nodes.append(helper.make_node("DequantizeLinear", list(q), [out], name=self._name("DQ")))
        return out

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name or self._name(op_type), **attrs))
        return out

    def qop(self, op_type: str, acts: list[tuple], scale: float, zp: int, extra: list[str] = (), name=None, **attrs):
        """DQ(each act) → op → Q(scale, zp)."""
        y = self.op(op_type, [self.dq(a) for a in acts] + list(extra), name=name, **attrs)
        return self.quantize(y, scale, zp)

    def conv(self, act, cout: int, k: int, scale: float, zp: int, rng, pad: int = 0, relu: bool = False, name=None):
        cin = int(self.shape_hint_c)
        w = rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
        ws = rng.random(cout).astype(np.float32) * 0.01 + 0.002
        wq = (self.const(w, "w"), self.const(ws, "ws"), self.const(np.zeros(cout, np.int8), "wz"))
        wdq = self._name("wdq")
        self.nodes.append(helper.make_node("DequantizeLinear", list(wq), [wdq], name=self._name("DQ"), axis=0))
        y = self.op("Conv", [self.dq(act), wdq], name=name, pads=[pad] * 4, kernel_shape=[k, k])
        if relu:
            y = self.op("Relu", [y])
        self.shape_hint_c = cout
        return self.quantize(y, scale, zp)

    shape_hint_c = 0

    def save(self, path: Path, out: tuple, out_shape=None, float_output: bool = True) -> Path:
        y = self.dq(out) if float_output else out[0]
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.input_shape))],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(path))
        return path


def ort_session(path: Path, optimized: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_float(sess, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def to_codes(y: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return (np.rint(y / np.float32(scale)) + zp).astype(np.int64)


def onnx_reference_run(path: Path, x: np.ndarray) -> np.ndarray:
    """onnx.reference (the spec's evaluator) on the model, its opset raised to 19 (the evaluator's oldest
    QuantizeLinear/DequantizeLinear; the ops used here have the same semantics from 13 to 19)."""
    from onnx.reference import ReferenceEvaluator

    m = onnx.load(str(path))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 19)
    m.ir_version = max(m.ir_version, 9)
    r = ReferenceEvaluator(m)
    name = m.graph.input[0].name
    return np.concatenate([r.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
