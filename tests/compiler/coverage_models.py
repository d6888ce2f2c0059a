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


# ---------------------------------------------------------------- two-input ops over every int8 pair
#: every (a, b) int8 pair as a 256 × 256 grid: a = row − 128, b = column − 128
PAIR_A, PAIR_B = (v.astype(np.int64) for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))


def binary_qdq_model(op: str, sa, za, sb, zb, sc, zc) -> onnx.ModelProto:
    """Q → DQ on two [1, 65536] float inputs, then `op` ("Add", "Mul"), then Q → DQ: what onnxruntime fuses into
    QLinearAdd / QLinearMul, the reference of our two-input kernels."""
    inits, nodes = [], []
    for nm, s, z in (("a", sa, za), ("b", sb, zb), ("c", sc, zc)):
        inits += [numpy_helper.from_array(np.array(s, np.float32), nm + "s")]
        inits += [numpy_helper.from_array(np.array(z, np.int8), nm + "z")]
    for nm in "ab":
        nodes.append(helper.make_node("QuantizeLinear", [nm, nm + "s", nm + "z"], [nm + "q"]))
        nodes.append(helper.make_node("DequantizeLinear", [nm + "q", nm + "s", nm + "z"], [nm + "d"]))
    nodes.append(helper.make_node(op, ["ad", "bd"], ["y"]))
    nodes.append(helper.make_node("QuantizeLinear", ["y", "cs", "cz"], ["yq"]))
    nodes.append(helper.make_node("DequantizeLinear", ["yq", "cs", "cz"], ["out"]))
    shape = [1, 65536]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "ab"],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def ort_all_pairs(op: str, sa, za, sb, zb, sc, zc) -> np.ndarray:
    """onnxruntime's output code for every int8 pair (PAIR_A, PAIR_B), as a 256 × 256 int64 grid."""
    from divqat_tvm.compiler import ort_reference

    f = np.float32
    sess = ort_reference.session(binary_qdq_model(op, sa, za, sb, zb, sc, zc))
    a = (f(sa) * (PAIR_A - za).astype(f)).astype(f).reshape(1, -1)
    b = (f(sb) * (PAIR_B - zb).astype(f)).astype(f).reshape(1, -1)
    y = sess.run(None, {"a": a, "b": b})[0]
    return (np.rint(y / f(sc)) + zc).astype(np.int64).reshape(256, 256)


# ---------------------------------------------------------------- float torch nets → onnxruntime quantize_static
def quantize_torch(
    model,
    path: Path,
    input_shape: tuple[int, ...],
    seed: int = 0,
    opset: int = 13,
    keep_activations: bool = False,
) -> Path:
    """A float torch module → ONNX → onnxruntime quantize_static (QDQ, per-channel int8 weights, int8
    activations, MinMax calibration on 32 normal inputs); `keep_activations` sets QDQKeepRemovableActivations
    (Relu/Clip kept between their own Q/DQ pairs)."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    float_path = path.with_suffix(".float.onnx")
    torch.onnx.export(
        model.eval(),
        torch.randn(1, *input_shape),
        str(float_path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=False,
        dynamic_axes={"input": {0: "N"}},
    )
    rng = np.random.default_rng(seed)
    batches = [{"input": rng.standard_normal((8, *input_shape)).astype(np.float32)} for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(float_path),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"QDQKeepRemovableActivations": keep_activations},
    )
    return path


def torch_nets():
    """The float nets of the coverage tests, by name (built on demand: torch is imported here)."""
    import torch
    from torch import nn

    class ConcatNet(nn.Module):
        """Two conv branches of different output scales, concatenated along channels (QLinearConcat requantizes
        one of them), then a conv, global pool and a linear layer."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(3, 6, 1)
            self.c = nn.Conv2d(14, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)
            with torch.no_grad():
                self.b.weight.mul_(3.0)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
            return self.fc(nn.functional.adaptive_avg_pool2d(torch.relu(self.c(y)), 1).flatten(1))

    class KeptNet(nn.Module):
        """Conv → ReLU, conv → ReLU6 (Clip), residual add → ReLU: every activation its own Q/DQ pair when
        quantized with QDQKeepRemovableActivations."""

        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            z = nn.functional.relu6(self.c2(y))
            y = torch.relu(y + z)
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

    class SENet(nn.Module):
        """Squeeze-excite: conv → ReLU → (global average pool or mean → 1x1 conv → ReLU → 1x1 conv → sigmoid)
        × the features, then hard-swish, global pool and a linear layer."""

        def __init__(self, mean: bool = False) -> None:
            super().__init__()
            self.mean = mean
            self.c1 = nn.Conv2d(3, 16, 3, padding=1)
            self.s1 = nn.Conv2d(16, 4, 1)
            self.s2 = nn.Conv2d(4, 16, 1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            z = y.mean((2, 3), keepdim=True) if self.mean else nn.functional.adaptive_avg_pool2d(y, 1)
            y = y * torch.sigmoid(self.s2(torch.relu(self.s1(z))))
            y = nn.functional.hardswish(y)
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

    class TwoScaleAdd(nn.Module):
        """A residual Add whose operands have very different scales (one branch scaled by 8)."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(3, 8, 1)
            self.fc = nn.Linear(8, 10)
            with torch.no_grad():
                self.b.weight.mul_(8.0)

        def forward(self, x):
            y = torch.relu(self.a(x) + self.b(x))
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

    class MLP(nn.Module):
        """A [N, 20] input (no image axes): Gemm → ReLU → Gemm."""

        def __init__(self) -> None:
            super().__init__()
            self.f1 = nn.Linear(20, 16)
            self.f2 = nn.Linear(16, 10)

        def forward(self, x):
            return self.f2(torch.relu(self.f1(x)))

    class Seq(nn.Module):
        """A [N, T, C] sequence input: transposed to channels first, unsqueezed to [N, C, 1, T], a 1×3 conv."""

        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(6, 8, (1, 3), padding=(0, 1))
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.c(x.transpose(1, 2).unsqueeze(2)))
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

    class Nhwc(nn.Module):
        """An NHWC [N, H, W, C] input permuted to NCHW inside the model."""

        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.c(x.permute(0, 3, 1, 2)))
            return self.fc(nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))

    class PadNet(nn.Module):
        """An asymmetric zero Pad (its own ONNX node) before a conv without padding."""

        def __init__(self) -> None:
            super().__init__()
            self.c0 = nn.Conv2d(3, 8, 1)
            self.c = nn.Conv2d(8, 8, 3)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = nn.functional.pad(torch.relu(self.c0(x)), (1, 2, 0, 1))
            return self.fc(nn.functional.adaptive_avg_pool2d(torch.relu(self.c(y)), 1).flatten(1))

    class SoftmaxNet(nn.Module):
        """Conv → global pool → linear → softmax: probabilities out (quantize_static's fixed softmax range)."""

        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)
            with torch.no_grad():
                self.fc.weight.mul_(4.0)

        def forward(self, x):
            y = nn.functional.adaptive_avg_pool2d(torch.relu(self.c(x)), 1).flatten(1)
            return torch.softmax(self.fc(y), dim=1)

    return {
        "softmax": SoftmaxNet,
        "pad": PadNet,
        "mlp": MLP,
        "seq": Seq,
        "nhwc": Nhwc,
        "concat": ConcatNet,
        "kept": KeptNet,
        "se": SENet,
        "se_mean": lambda: SENet(mean=True),
        "two_scale_add": TwoScaleAdd,
    }


def coverage_model(name: str, path: Path, input_shape: tuple[int, ...] = (3, 12, 12), seed: int = 0, **kw) -> Path:
    """torch_nets()[name] with seeded weights, quantized by quantize_static into `path`."""
    import torch

    torch.manual_seed(seed)
    return quantize_torch(torch_nets()[name](), path, input_shape, seed=seed, **kw)
