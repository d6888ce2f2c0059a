"""Import a QDQ ONNX model through TVM's Relax ONNX frontend and rebuild it as an int8 `Graph`.

`tvm.relax.frontend.onnx.from_onnx` turns QuantizeLinear/DequantizeLinear into `R.quantize` /
`R.dequantize` around float ops. Each `R.quantize` (except the input's) closes one int8 operator; we
walk back from it through the float dataflow (conv2d/matmul + bias, add, pools, mean, reshape, relu)
to the `R.dequantize` nodes that open it, whose arguments are int8 tensors or int8 constants.

The ONNX graph itself gives what Relax does not keep. The k-th `R.quantize` is the k-th QuantizeLinear node
(the frontend converts nodes in order), so every op is named after its ONNX node and every error says which
node (name, op type, index) it is about. Ops whose meaning is in the node rather than in the Relax the frontend
makes of it (Concat, Mul, Pad, Softmax, Sigmoid/Tanh/HardSigmoid/HardSwish, Transpose/Reshape/Squeeze/
Unsqueeze/Flatten chains, float moves before the input's QuantizeLinear) are lowered from the node. Constant
subgraphs are folded with onnx.reference first; unsupported op types are refused before the frontend runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from divqat_tvm.compiler.graph import (
    QMAX,
    QMIN,
    Add,
    AvgPool,
    Conv2D,
    Dense,
    GlobalAvgPool,
    Graph,
    MaxPool,
    Op,
    QTensor,
    Reshape,
)
from divqat_tvm.compiler.ops.elementwise import Lut, Mul, unary_table
from divqat_tvm.compiler.ops.movement import Concat, Pad, Transpose
from divqat_tvm.compiler.ops.pooling import AvgPoolWindowed
from divqat_tvm.compiler.ops.softmax import SoftmaxOrt
from divqat_tvm.errors import CompileError

# ONNX op types the importer understands (QDQ wrappers and the float ops between them).
SUPPORTED_ONNX_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Identity",
    "Constant",
    "Concat",
    "Mul",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "ReduceMean",
    "Pad",
    "Softmax",
}
_SUPPORTED_FIX = (
    "Between QDQ pairs the compiler handles 2-D Conv, Gemm/MatMul, Add, Mul, Concat, pools, ReduceMean over H and W, "
    "Relu/Clip, Sigmoid, Tanh, HardSigmoid, HardSwish, Softmax, Pad, Flatten/Reshape/Squeeze/Unsqueeze/Transpose."
)
# Ops lowered from their ONNX node (attributes, op type) rather than from the Relax the frontend makes of them.
_MOVES = ("Transpose", "Squeeze", "Unsqueeze", "Reshape", "Flatten")  # same codes, new order or shape
_NODE_OPS = ("Concat", "Mul", "Pad", "Softmax", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", *_MOVES)
_ACTIVATIONS = ("Relu", "Clip", "Identity")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def node_label(node: onnx.NodeProto, index: int) -> str:
    """How an error names an ONNX node: its name, op type and index in the graph."""
    return f"ONNX node '{node.name or node.output[0]}' ({node.op_type}, node #{index})"


def check_supported(model: onnx.ModelProto) -> None:
    """Raise CompileError naming the first node whose op type we cannot compile."""
    for i, node in enumerate(model.graph.node):
        if node.op_type not in SUPPORTED_ONNX_OPS or node.domain not in ("", "ai.onnx"):
            raise CompileError(
                f"unsupported ONNX operator '{node.op_type}' in node '{node.name or node.output[0]}' (node #{i}).",
                f"The compiler handles {', '.join(sorted(SUPPORTED_ONNX_OPS))}; "
                "export the model with only these (QDQ format, opset 13).",
            )


def frontend_error(model: onnx.ModelProto, path: str | Path, e: Exception) -> CompileError:
    """An error for a model TVM's frontend could not convert, in ONNX's words: what onnx's own full check and
    shape inference say about it (they name the node), else the exception's type (TVM's text names its own IR)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as check:  # onnx.checker.ValidationError, onnx.shape_inference.InferenceError
        first = str(check).strip().splitlines()[0] if str(check).strip() else type(check).__name__
        return CompileError(
            f"'{path}' is not a valid ONNX model: {first}", "Fix the export (onnx.checker names the node)."
        )
    return CompileError(
        f"TVM's ONNX frontend could not convert '{path}' ({type(e).__name__}).",
        "Check the model with onnx.checker.check_model(full_check=True) and export it with opset 13 or later.",
    )


def load_onnx(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise CompileError(f"model file '{path}' does not exist.", "Pass the path of a QDQ ONNX file.")
    if path.stat().st_size == 0:
        raise CompileError(f"model file '{path}' is empty (0 bytes).", "Copy or export the model again.")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and friends
        raise CompileError(
            f"'{path}' is not a readable ONNX model; is it truncated? ({type(e).__name__})",
            "Copy or export the model again.",
        ) from e
    if len(model.graph.node) == 0 or len(model.graph.output) == 0:
        raise CompileError(
            f"'{path}' holds no ONNX graph (truncated, or not an ONNX file).", "Copy or export the model again."
        )
    return model


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose constant subgraphs (every input an initializer or another constant, e.g. the
    ConstantOfShape → Concat → Slice → Cast chain torch exports for F.pad's pads) are evaluated by onnx.reference
    and stored as initializers. QuantizeLinear/DequantizeLinear nodes are never folded (they define the int8
    graph)."""
    import copy

    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    m = copy.deepcopy(model)
    known = {t.name for t in m.graph.initializer}
    fold: list[onnx.NodeProto] = []
    for node in m.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.domain not in ("", "ai.onnx"):
            continue
        if all(not i or i in known for i in node.input):
            fold.append(node)
            known.update(node.output)
    if all(n.op_type == "Constant" for n in fold):
        return m  # nothing beyond Constant nodes, which the frontend reads
    folded = {o for n in fold for o in n.output}
    kept = [n for n in m.graph.node if not any(o in folded for o in n.output)]
    needed = sorted({i for n in kept for i in n.input if i in folded} | {o.name for o in m.graph.output} & folded)
    sub = onnx.helper.make_graph(
        fold, "constants", [], [onnx.helper.make_empty_tensor_value_info(n) for n in needed], list(m.graph.initializer)
    )
    sub_model = onnx.helper.make_model(sub, opset_imports=list(m.opset_import))
    sub_model.ir_version = m.ir_version
    try:
        values = ReferenceEvaluator(sub_model).run(None, {})
    except Exception:  # an op the reference evaluator lacks: leave the graph as it is (check_supported names it)
        return m
    del m.graph.node[:]
    m.graph.node.extend(kept)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in zip(needed, values))
    return m


def uint8_to_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose uint8 QuantizeLinear/DequantizeLinear use int8 with zero point − 128 (and uint8
    constants dequantized by them, codes − 128): the same real values, so the int8 graph computes the same
    function (uint8 code q is int8 code q − 128; quantize clamps to [0, 255] ↔ [−128, 127]). A Q without a
    zero point (uint8 by default) gets an explicit int8 zero point −128."""
    import copy

    from onnx import numpy_helper

    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    made: dict[str, str] = {}
    retyped: set[str] = set()

    def shifted(name: str) -> str:
        if name not in made:
            arr = numpy_helper.to_array(inits[name]).astype(np.int16) - 128
            new = f"{name}_as_int8"
            m.graph.initializer.append(numpy_helper.from_array(arr.astype(np.int8), new))
            made[name] = new
        return made[name]

    for node in m.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None and len(node.input) > 2 and node.input[2]:
            continue  # a computed zero point: the importer reports it
        if zp is not None and zp.data_type != onnx.TensorProto.UINT8:
            continue
        if zp is None:
            if node.op_type == "DequantizeLinear" and node.input[0] not in inits:
                continue  # dequantizes a tensor whose type its producer decides
            name = f"{node.name or node.output[0]}_zero_point_int8"
            m.graph.initializer.append(numpy_helper.from_array(np.array(-128, np.int8), name))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
        else:
            node.input[2] = shifted(node.input[2])
        if (
            node.op_type == "DequantizeLinear"
            and node.input[0] in inits
            and inits[node.input[0]].data_type == onnx.TensorProto.UINT8
        ):
            node.input[0] = shifted(node.input[0])
        if node.op_type == "QuantizeLinear":
            retyped.add(node.output[0])
    kept = [v for v in m.graph.value_info if v.name not in retyped]
    del m.graph.value_info[:]
    m.graph.value_info.extend(kept)
    return m


def import_onnx(path: str | Path) -> Graph:
    """QDQ ONNX file → int8 Graph (batch 1, NCHW)."""
    model = fold_constants(load_onnx(path))
    check_supported(model)
    model = uint8_to_int8(model)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise CompileError(
            f"'{path}' has {len(inputs)} inputs and {len(model.graph.output)} outputs.",
            "Compile a model with one image input and one logits output.",
        )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
        raise CompileError(
            f"input '{inputs[0].name}' has shape {dims}: it needs a batch axis and fixed sizes after it.",
            "Export with fixed sizes after the batch axis, e.g. [N, C, H, W], [N, T, C] or [N, F] (N may be dynamic).",
        )
    from tvm.relax.frontend.onnx import from_onnx

    try:
        mod = from_onnx(model, shape_dict={inputs[0].name: [1, *dims[1:]]}, keep_params_in_input=False)
    except Exception as e:
        raise frontend_error(model, path, e) from e
    graph = _RelaxToGraph(mod["main"], model).build()
    graph.source = str(path)
    return graph


@dataclass
class _Q:
    """An int8 value feeding a float op: an activation tensor (name) or a constant (array)."""

    tensor: str | None
    const: np.ndarray | None
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


class _RelaxToGraph:
    """Pattern matcher over the Relax `main` produced by from_onnx."""

    def __init__(self, main: Any, model: onnx.ModelProto | None = None) -> None:
        self.main = main
        self.model = model
        nodes = list(model.graph.node) if model is not None else []
        self.index = {id(n): i for i, n in enumerate(nodes)}
        self.producer = {o: n for n in nodes for o in n.output}
        self.onnx_qs = [n for n in nodes if n.op_type == "QuantizeLinear"]
        self.inits = {t.name: t for t in model.graph.initializer} if model is not None else {}
        self.q_tensor: dict[str, str] = {}  # ONNX QuantizeLinear output → Graph tensor name
        inits = set(self.inits)
        graph_inputs = [i for i in model.graph.input if i.name not in inits] if model is not None else []
        self.input_name = graph_inputs[0].name if graph_inputs else ""
        self.input_dims = [d.dim_value for d in graph_inputs[0].type.tensor_type.shape.dim] if graph_inputs else []
        self.edge_input: str | None = None
        self.bindings: dict[Any, Any] = {}
        self.order: list[Any] = []
        for block in main.body.blocks:
            for b in block.bindings:
                self.bindings[b.var] = b.value
                self.order.append(b)
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[Op] = []
        self.int8_name: dict[Any, str] = {}

    # ---- helpers over Relax expressions -------------------------------------------------------
    def _value(self, e: Any) -> Any:
        """Follow variables to the call (or constant) that defines them."""
        while e in self.bindings:
            e = self.bindings[e]
        return e

    @staticmethod
    def _op_name(e: Any) -> str:
        op = getattr(e, "op", None)
        return getattr(op, "name", "") if op is not None else ""

    @staticmethod
    def _const(e: Any) -> np.ndarray | None:
        v = getattr(e, "value", None)
        return v.numpy() if v is not None and hasattr(v, "numpy") else None

    def _shape(self, var: Any) -> tuple[int, ...]:
        return tuple(int(s) for s in var.ty.shape)

    def _dq(self, e: Any) -> _Q:
        call = self._value(e)
        if self._op_name(call) != "relax.dequantize":
            raise CompileError(
                "a float input of it is not a DequantizeLinear output.",
                "Quantize the model in QDQ format (every float op between DQ and Q nodes).",
            )
        x, s, z = call.args
        scale = self._const(s)
        zp = self._const(z)
        if scale is None or zp is None:
            raise CompileError(
                "a DequantizeLinear has non-constant scale or zero point.", "Fold the qparams into constants."
            )
        const = self._const(x)
        if const is not None:
            return _Q(None, const, scale.astype(np.float32), zp.astype(np.int64), int(call.attrs.axis))
        name = self.int8_name.get(x)
        if name is None:
            raise CompileError(
                "a DequantizeLinear before it reads a tensor that is not an int8 activation of the graph.",
                "Only int8 activations and constants may be dequantized.",
            )
        return _Q(name, None, scale.astype(np.float32), zp.astype(np.int64), int(call.attrs.axis))

    def _act(self, name: str) -> QTensor:
        return self.tensors[name]

    # ---- building ------------------------------------------------------------------------------
    def build(self) -> Graph:
        param = self.main.params[0]
        graph_input = None
        quantizes = [b for b in self.order if self._op_name(b.value) == "relax.quantize"]
        qnodes: list[onnx.NodeProto | None] = list(self.onnx_qs)
        if len(qnodes) != len(quantizes):  # the frontend folded or added one: names are unknown
            qnodes = [None] * len(quantizes)
        for b, qn in zip(quantizes, qnodes):
            node = self._compute_node(qn)
            try:
                op = self._quantize(b, qn, param)
            except CompileError as e:
                if node is None:
                    raise
                raise CompileError(f"{node_label(node, self.index[id(node)])}: {e.problem}", e.fix) from None
            if op is None:
                if graph_input is not None:
                    raise CompileError(
                        "the model quantizes its input twice.", "Export one QuantizeLinear on the input."
                    )
                graph_input = b.var.name
                continue
            if graph_input is None and self.edge_input is not None:
                graph_input = self.edge_input  # the input quantized before the moves _quantize built
            if node is not None:
                op.name = node.name or node.output[0]
            self.ops.append(op)
        if graph_input is None:
            raise CompileError("the model's input is not quantized by a QuantizeLinear.", "Export in QDQ format.")
        out = self._value(self.main.body.body)
        if self._op_name(out) != "relax.dequantize" or out.args[0] not in self.int8_name:
            raise CompileError(
                "the model's output is not a DequantizeLinear of an int8 tensor.",
                "End the QDQ model with Q → DQ after the last Gemm.",
            )
        return Graph(self.tensors, self.ops, graph_input, self.int8_name[out.args[0]])

    def _quantize(self, b: Any, qn: onnx.NodeProto | None, param: Any) -> Op | None:
        """The int8 tensor a QuantizeLinear makes, and the op that computes it (None for the graph's input)."""
        v = b.value
        src, s, z = v.args
        scale, zp = self._const(s), self._const(z)
        label = f"QuantizeLinear '{qn.name or qn.output[0]}'" if qn is not None else "a QuantizeLinear"
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            raise CompileError(
                f"{label} has no constant per-tensor scale/zero point.", "Quantize activations per tensor."
            )
        if str(v.attrs.out_dtype) != "int8":
            raise CompileError(
                f"{label} produces {v.attrs.out_dtype}, not int8.", "Quantize activations to int8 (QuantType.QInt8)."
            )
        shape = self._shape(b.var)
        name = b.var.name
        layout = "NCHW" if len(shape) == 4 else "NC"
        t = QTensor(name, shape, float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), layout)
        self.tensors[name] = t
        self.int8_name[b.var] = name
        if qn is not None:
            self.q_tensor[qn.output[0]] = name
        if src.same_as(param):
            return None
        if qn is not None and (edge := self._edge_moves(qn)):
            # float data movement on the graph's input before its QuantizeLinear (e.g. an NHWC input permuted,
            # a [N, T, C] sequence transposed): quantizing commutes with it, so the int8 input is the model's
            # input quantized, and the moves run on codes.
            shape = (1, *self.input_dims[1:])
            nhwc = edge[-1].op_type == "Transpose" and _perm(edge[-1]) == (0, 3, 1, 2)
            in_layout = "NHWC" if nhwc else ("NCHW" if len(shape) == 4 else "NC")
            src_t = QTensor(f"{name}_input", shape, t.scale, t.zero_point, in_layout)
            self.tensors[src_t.name] = src_t
            self.edge_input = src_t.name
            return self._moves_from(edge, src_t, t)
        if self._const(self._value(src)) is not None:
            raise CompileError(
                f"{label} quantizes a constant, which the compiler cannot fold into an operator.",
                "Fold the constant into the neighbouring weights (e.g. scale the conv instead of multiplying).",
            )
        node = self._producer(qn.input[0]) if qn is not None else None
        if node is not None and node.op_type in _NODE_OPS:
            return self._from_node(node, t)
        return self._match(self._value(src), t)

    # ---- ops lowered from their ONNX node ------------------------------------------------------
    def _producer(self, name: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        while node is not None and node.op_type == "Identity":
            node = self.producer.get(node.input[0])
        return node

    def _compute_node(self, qn: onnx.NodeProto | None) -> onnx.NodeProto | None:
        """The ONNX node an error or an op name refers to: the op a QuantizeLinear closes (through Relu/Clip,
        unless they act on a DequantizeLinear: a kept activation), else the QuantizeLinear itself."""
        if qn is None:
            return None
        node = self._producer(qn.input[0])
        if node is None or node.op_type == "DequantizeLinear":
            return qn
        while node.op_type in _ACTIVATIONS:
            up = self._producer(node.input[0])
            if up is None or up.op_type == "DequantizeLinear":
                return node
            node = up
        return node

    def _dq_input(self, name: str, what: str) -> str:
        """The Graph tensor a float input of an ONNX node dequantizes."""
        dq = self._producer(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            raise CompileError(
                f"its input '{name}' is not a DequantizeLinear output.",
                "Quantize the model in QDQ format (every float op between DQ and Q nodes).",
            )
        if dq.input[0] in self.inits or dq.input[0] not in self.q_tensor:
            raise CompileError(f"{what} reads a constant ('{dq.input[0]}').", f"Only {what}s of activations compile.")
        return self.q_tensor[dq.input[0]]

    def _from_node(self, node: onnx.NodeProto, out: QTensor) -> Op:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kind = node.op_type
        if kind in ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish"):
            src = self._act(self._dq_input(node.input[0], kind))
            func = kind.lower()
            alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
            table = unary_table(func, src.scale, src.zero_point, out.scale, out.zero_point, alpha=alpha, beta=beta)
            return Lut(out.name, [src.name], out.name, table=table, func=func)
        if kind == "Concat":
            names = [self._dq_input(x, kind) for x in node.input]
            axis = int(attrs.get("axis", 0))
            axis = axis + len(out.shape) if axis < 0 else axis
            if axis == 0:
                raise CompileError("it concatenates along the batch axis.", "Concatenate along a feature axis.")
            return Concat(out.name, names, out.name, axis=axis)
        if kind == "Mul":
            a, b = (self._dq_input(x, kind) for x in node.input)
            if self._act(a).shape[0] != out.shape[0] or self._act(b).shape[0] != out.shape[0]:
                raise CompileError("it broadcasts along the batch axis.", "Multiply tensors of the same batch size.")
            return Mul(out.name, [a, b], out.name)
        if kind == "Pad":
            return self._pad(node, attrs, out)
        if kind == "Softmax":
            src = self._act(self._dq_input(node.input[0], kind))
            rank = len(out.shape)
            opsets = self.model.opset_import if self.model is not None else []
            opset = max((o.version for o in opsets if o.domain in ("", "ai.onnx")), default=13)
            axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
            axis = axis + rank if axis < 0 else axis
            if opset < 13 and axis != rank - 1:  # opset < 13 flattens the axes from `axis` on
                raise CompileError(
                    f"it is an opset-{opset} Softmax over axes {axis}..{rank - 1}.", "Export with opset 13."
                )
            if axis == 0:
                raise CompileError("it normalises along the batch axis.", "Apply Softmax along a feature axis.")
            return SoftmaxOrt(out.name, [src.name], out.name, axis=axis)
        return self._moves(node, out)

    def _pad(self, node: onnx.NodeProto, attrs: dict[str, Any], out: QTensor) -> Op:
        """ONNX Pad (opset 11+: pads and the constant as inputs; opset 2: attributes), constant mode only."""
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            raise CompileError(f"it pads in mode '{mode}'.", "Export Pad with mode 'constant' (zero padding).")
        src = self._act(self._dq_input(node.input[0], "Pad"))
        self._same_qparams(src, out, "Pad")
        if len(node.input) > 3 and node.input[3]:
            raise CompileError("it pads a subset of axes (the 'axes' input).", "Export Pad with opset 13.")
        pads = self._constant(node.input[1]) if len(node.input) > 1 else np.array(attrs.get("pads", []))
        value = self._constant(node.input[2]) if len(node.input) > 2 and node.input[2] else attrs.get("value", 0.0)
        if pads is None or value is None:
            raise CompileError("its pads or constant value are computed.", "Fold them into constants before export.")
        p = [int(v) for v in np.asarray(pads).reshape(-1)]
        rank = len(src.shape)
        if len(p) != 2 * rank or min(p) < 0 or p[0] or p[rank]:
            raise CompileError(f"its pads {p} crop or pad the batch axis.", "Pad the feature axes only.")
        code = (
            int(
                np.clip(
                    np.rint(np.float32(float(np.asarray(value).reshape(-1)[0])) / np.float32(out.scale)),
                    -128 - out.zero_point,
                    127 - out.zero_point,
                )
            )
            + out.zero_point
        )
        return Pad(out.name, [src.name], out.name, before=tuple(p[:rank]), after=tuple(p[rank:]), value=code)

    def _constant(self, name: str) -> np.ndarray | None:
        """An initializer's or Constant node's value (None if computed)."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def _edge_moves(self, qn: onnx.NodeProto) -> list[onnx.NodeProto]:
        """The data-movement nodes between the graph's float input and this QuantizeLinear (empty if none)."""
        node = self._producer(qn.input[0])
        if node is None or node.op_type not in _MOVES:
            return []
        chain = self._chain(node)
        return chain if chain[-1].input[0] == self.input_name else []

    def _chain(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """`node` and the data-movement nodes feeding it, last to first."""
        chain = [node]
        while (up := self._producer(chain[-1].input[0])) is not None and up.op_type in _MOVES:
            chain.append(up)
        return chain

    def _moves(self, node: onnx.NodeProto, out: QTensor) -> Op:
        """A chain of data-movement nodes (Transpose, Squeeze, Unsqueeze, Reshape, Flatten) between one DQ and one
        Q, which quantize_static leaves unquantized inside: one op per node (all but the last appended here)."""
        chain = self._chain(node)
        src = self._act(self._dq_input(chain[-1].input[0], chain[-1].op_type))
        self._same_qparams(src, out, node.op_type)
        return self._moves_from(chain, src, out)

    def _moves_from(self, chain: list[onnx.NodeProto], src: QTensor, out: QTensor) -> Op:
        op: Op | None = None
        for k, n in enumerate(reversed(chain)):
            last = k == len(chain) - 1
            shape = out.shape if last else self._onnx_shape(n.output[0])
            layout = "NCHW" if len(shape) == 4 else "NC"
            t = out if last else QTensor(f"{out.name}_{k}", shape, out.scale, out.zero_point, layout)
            if shape[0] != src.shape[0]:
                raise CompileError(
                    f"'{n.name}' changes the batch axis ({src.shape} → {shape}).", "Keep axis 0 the batch."
                )
            if n.op_type == "Transpose":
                perm = _perm(n, len(src.shape))
                if perm[0] != 0:
                    raise CompileError(f"it moves the batch axis (perm {list(perm)}).", "Keep axis 0 first.")
                op = Transpose(n.name or t.name, [src.name], t.name, perm=perm)
            else:
                op = Reshape(n.name or t.name, [src.name], t.name)  # the same bytes, a new shape
            if not last:
                self.tensors[t.name] = t
                self.ops.append(op)
            src = t
        assert op is not None
        return op

    def _onnx_shape(self, name: str) -> tuple[int, ...]:
        """A float intermediate's shape at batch 1, from onnx shape inference."""
        if not hasattr(self, "_shapes"):
            import copy

            m = copy.deepcopy(self.model)
            assert m is not None
            m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
            m = onnx.shape_inference.infer_shapes(m)
            self._shapes = {
                v.name: tuple(int(d.dim_value) for d in v.type.tensor_type.shape.dim)
                for v in list(m.graph.value_info) + list(m.graph.output)
            }
        shape = self._shapes.get(name)
        if not shape or any(d <= 0 for d in shape):
            raise CompileError(f"the shape of '{name}' is not known.", "Export with fixed sizes after the batch axis.")
        return shape

    def _match(self, e: Any, out: QTensor) -> Op:
        """Recognise the float computation `e` whose result is quantized into `out`."""
        lo, hi = QMIN, QMAX
        name = self._op_name(e)
        # Activations: Relu, or Clip(0, max) (e.g. ReLU6), which the frontend emits as R.clip or, with tensor
        # bounds, as call_tir(maximum) then call_tir(minimum). The clamp is TFLite's quantized activation range.
        while name in ("relax.nn.relu", "relax.clip") or self._tir_callee(e) in ("maximum", "minimum"):
            if name == "relax.nn.relu":
                lo, e = max(lo, out.zero_point), e.args[0]
            elif name == "relax.clip":
                lo = max(lo, self._act_min(_scalar(e.args[1]), out))
                hi = min(hi, self._act_max(_scalar(e.args[2]), out, hi))
                e = e.args[0]
            else:
                x, bound = e.args[1].fields
                value = self._bound(bound)
                if self._tir_callee(e) == "maximum":
                    lo = max(lo, self._act_min(value, out))
                else:
                    hi = min(hi, self._act_max(value, out, hi))
                e = x
            e = self._value(e)
            name = self._op_name(e)
        if name == "relax.dequantize":  # a kept activation: DQ → Relu/Clip → Q (or a bare DQ → Q)
            kept = self._dq(e)
            if kept.tensor is None:
                raise CompileError("it quantizes a constant.", "Fold constant subgraphs before exporting.")
            src = self._act(kept.tensor)
            table = unary_table("identity", src.scale, src.zero_point, out.scale, out.zero_point, lo, hi)
            return Lut(out.name, [kept.tensor], out.name, table=table, func="clamp")
        if name == "relax.add":
            a, b = (self._value(x) for x in e.args)
            an, bn = self._op_name(a), self._op_name(b)
            if an in ("relax.nn.conv2d", "relax.matmul"):
                return self._linear(a, self._bias(b), out, lo, hi)
            if bn in ("relax.nn.conv2d", "relax.matmul"):
                return self._linear(b, self._bias(a), out, lo, hi)
            qa, qb = self._dq(e.args[0]), self._dq(e.args[1])
            if qa.tensor is None or qb.tensor is None:
                raise CompileError("an Add has a constant operand.", "Only activation + activation adds compile.")
            self._same_shape(qa.tensor, out)
            self._same_shape(qb.tensor, out)
            return Add(out.name, [qa.tensor, qb.tensor], out.name, act_min=lo, act_max=hi)
        if name in ("relax.nn.conv2d", "relax.matmul"):
            return self._linear(e, None, out, lo, hi)
        q = self._dq(e.args[0]) if e.args else None
        if q is None or q.tensor is None:
            raise CompileError(
                "its float computation is not one the compiler lowers (e.g. a 1-D or 3-D convolution, a constant operand).",
                _SUPPORTED_FIX,
            )
        src = self._act(q.tensor)
        if name == "relax.nn.max_pool2d":
            self._same_qparams(src, out, "MaxPool")
            a = e.attrs
            return MaxPool(
                out.name,
                [q.tensor],
                out.name,
                kernel=_pair(a.pool_size),
                stride=_pair(a.strides),
                padding=_pad4(a.padding),
            )
        if name == "relax.nn.avg_pool2d":
            a = e.attrs
            pad = _pad4(a.padding)
            kernel, stride = _pair(a.pool_size), _pair(a.strides)
            if any(int(v) != 1 for v in a.dilation):
                raise CompileError(
                    f"AveragePool has dilations {[int(v) for v in a.dilation]}.",
                    "Export AveragePool without dilation.",
                )
            windowed = AvgPoolWindowed(
                out.name,
                [q.tensor],
                out.name,
                kernel=_pair(kernel),
                stride=_pair(stride),
                padding=pad,
                count_include_pad=bool(a.count_include_pad),
            )
            try:
                divisors = windowed.divisors(Graph(self.tensors, [], q.tensor, out.name))
            except ValueError:
                raise CompileError(
                    "AveragePool has a window entirely in the padding.",
                    "Use less padding or ceil_mode=0.",
                ) from None
            if np.any(divisors != kernel[0] * kernel[1]):  # partial windows (ceil_mode, or padding not counted)
                return windowed
            return AvgPool(
                out.name,
                [q.tensor],
                out.name,
                kernel=_pair(a.pool_size),
                stride=_pair(a.strides),
                padding=pad,
            )
        if name == "relax.mean":
            axes = sorted(int(v) for v in e.attrs.axis)
            if axes != [2, 3]:
                raise CompileError(
                    f"a mean over axes {axes} is not a global average pool.",
                    "Only GlobalAveragePool (mean over H, W) compiles.",
                )
            if len(out.shape) != 4:
                self.tensors[out.name] = out = QTensor(
                    out.name, out.shape + (1,) * (4 - len(out.shape)), out.scale, out.zero_point
                )
            return GlobalAvgPool(out.name, [q.tensor], out.name)
        if name == "relax.reshape":
            self._same_qparams(src, out, "Flatten/Reshape")
            return Reshape(out.name, [q.tensor], out.name)
        raise CompileError(
            "its float computation is not one the compiler lowers (e.g. a 1-D or 3-D convolution, a constant operand).",
            _SUPPORTED_FIX,
        )

    def _tir_callee(self, e: Any) -> str:
        """Name of the PrimFunc a `call_tir` calls ('' for anything else)."""
        if self._op_name(e) != "relax.call_tir":
            return ""
        return getattr(e.args[0], "name_hint", "")

    def _bound(self, e: Any) -> float:
        """A Clip bound as the frontend writes it: where(isnan(c), ±inf, c) or a constant."""
        v = self._value(e)
        if self._op_name(v) == "relax.where":
            v = v.args[2]
        return _scalar(v)

    @staticmethod
    def _act_min(value: float, out: QTensor) -> int:
        if value != 0.0:
            raise CompileError(f"a Clip with min {value} is not a ReLU.", "Use ReLU or Clip(0, max).")
        return max(QMIN, out.zero_point)

    @staticmethod
    def _act_max(value: float, out: QTensor, hi: int) -> int:
        return min(hi, QMAX, out.zero_point + int(round(value / out.scale)))

    def _bias(self, e: Any) -> np.ndarray:
        if self._op_name(e) == "relax.reshape":
            e = self._value(e.args[0])
        q = self._dq(e)
        if q.const is None or q.const.dtype != np.int32 or np.any(q.zero_point != 0):
            raise CompileError(
                "a conv/gemm bias is not an int32 constant with zero point 0.",
                "Quantize biases to int32 (scale s_in·s_w).",
            )
        return q.const.reshape(-1).astype(np.int32)

    def _linear(self, e: Any, bias: np.ndarray | None, out: QTensor, lo: int, hi: int) -> Op:
        x = self._dq(e.args[0])
        w_expr = self._value(e.args[1])
        transposed = self._op_name(w_expr) == "relax.permute_dims"
        w = self._dq(w_expr.args[0] if transposed else w_expr)
        if x.tensor is None or w.const is None:
            raise CompileError(
                "the conv/gemm does not read an activation and a constant weight.",
                "Weights must be int8 initializers behind a DequantizeLinear.",
            )
        if w.const.dtype != np.int8 or np.any(w.zero_point != 0):
            raise CompileError("the weight is not symmetric int8.", "Quantize weights to int8 with zero point 0.")
        weight = w.const
        n_out = weight.shape[0] if (self._op_name(e) == "relax.nn.conv2d" or transposed) else weight.shape[1]
        if not transposed and self._op_name(e) == "relax.matmul":
            weight = weight.T  # MatMul weight [in, out] → [out, in]
        out_axis = 0 if (self._op_name(e) == "relax.nn.conv2d" or transposed) else 1
        if w.scale.size not in (1, n_out) or (w.scale.size > 1 and w.axis % w.const.ndim != out_axis):
            raise CompileError(
                f"its weight has {w.scale.size} scales along axis {w.axis} for {n_out} output channels "
                f"(axis {out_axis} of the weight).",
                "Quantize weights per output channel or per tensor.",
            )
        w_scale = np.broadcast_to(w.scale.reshape(-1), (n_out,)).astype(np.float32).copy()
        b = np.zeros(n_out, np.int32) if bias is None else bias
        src = self._act(x.tensor)
        if self._op_name(e) == "relax.nn.conv2d":
            a = e.attrs
            if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
                raise CompileError(f"conv has layout {a.data_layout}/{a.kernel_layout}.", "Export NCHW/OIHW.")
            return Conv2D(
                out.name,
                [x.tensor],
                out.name,
                weight=np.ascontiguousarray(weight),
                weight_scale=w_scale,
                bias=b,
                stride=_pair(a.strides),
                padding=_pad4(a.padding),
                dilation=_pair(a.dilation),
                groups=int(a.groups),
                act_min=lo,
                act_max=hi,
            )
        if len(src.shape) != 2:
            raise CompileError(f"the Gemm reads a {len(src.shape)}-D tensor.", "Flatten before the Gemm.")
        return Dense(
            out.name,
            [x.tensor],
            out.name,
            weight=np.ascontiguousarray(weight),
            weight_scale=w_scale,
            bias=b,
            act_min=lo,
            act_max=hi,
        )

    def _same_qparams(self, a: QTensor, b: QTensor, what: str) -> None:
        if a.scale != b.scale or a.zero_point != b.zero_point:
            raise CompileError(
                f"{what} changes scale/zero point ({a.scale}, {a.zero_point}) → ({b.scale}, {b.zero_point}).",
                f"Quantize the {what} output with its input's qparams.",
            )

    def _same_shape(self, name: str, out: QTensor) -> None:
        if self.tensors[name].shape != out.shape:
            raise CompileError(
                f"the Add broadcasts {self.tensors[name].shape} to {out.shape}.",
                "Only same-shape residual adds compile.",
            )


def _perm(node: onnx.NodeProto, rank: int = 4) -> tuple[int, ...]:
    """A Transpose node's permutation (default: reversed axes)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return tuple(int(p) for p in attrs.get("perm", range(rank - 1, -1, -1)))


def _scalar(e: Any) -> float:
    """A Relax scalar argument (PrimValue or constant) as a Python float."""
    v = getattr(e, "value", e)
    if hasattr(v, "numpy"):
        return float(v.numpy().reshape(-1)[0])
    if hasattr(v, "value"):
        return float(v.value)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise CompileError("a bound of a Clip is not a constant.", "Export Clip with constant min and max.") from None


def _pair(v: Any) -> tuple[int, int]:
    """A 2-D window attribute (kernel, stride, dilation) as two ints."""
    a, b = (int(x) for x in v)
    return a, b


def _pad4(p: Any) -> tuple[int, int, int, int]:
    v = [int(x) for x in p]
    if len(v) == 2:
        return (v[0], v[1], v[0], v[1])
    return (v[0], v[1], v[2], v[3])
