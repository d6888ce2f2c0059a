"""onnxruntime as the reference of the "float" requantization scheme, with fixed, named options.

Session: GraphOptimizationLevel.ORT_ENABLE_ALL, 1 intra-op thread, 1 inter-op thread, CPUExecutionProvider.
With these options onnxruntime fuses DQ → op → Q into its integer kernels (QLinearConv, QLinearAdd,
QLinearAveragePool, QLinearGlobalAveragePool, QGemm) — but on x86 not at a branch point of an int8 graph:

- onnxruntime gives each consumer of a shared DequantizeLinear its own copy (EnsureUniqueDQForNodeUnit),
  so a tensor read by two ops (a residual block's input, feeding a conv and the add) is one
  QuantizeLinear with two DequantizeLinear consumers;
- off ARM, QDQIsInt8Allowed() is false and QDQS8ToU8Transformer rewrites int8 Q→DQ pairs to uint8 (codes
  and zero point + 128), but only a Q with exactly one consumer (qdq_s8_to_u8.cc: CheckOutputEdges(q, 1));
- the selectors (qdq_selectors.cc) then see an op whose input DQ is int8 and output Q uint8 (or the
  reverse) and refuse to fuse it: the producer and the consumers of every branch point, and the Add that
  joins the branch, stay float32 Conv/Add, whose float sums are not bit-reproducible.

No int8 export avoids this: a fused op takes exactly one Q per output (CheckQDQNodes), so a branch point is
always a Q with several DQ consumers. `split_shared_dq` and `activations_to_uint8` apply onnxruntime's own
rewrites uniformly (every DQ single-consumer, every activation Q/DQ uint8 with zero point + 128: the same
real values), after which every op is fused and the reference is onnxruntime's x86 integer kernels
throughout; requant.ORT_U8_OFFSET has what the uint8 domain changes in the arithmetic.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx

ORT_OPTIONS = (
    "GraphOptimizationLevel.ORT_ENABLE_ALL, intra_op_num_threads=1, inter_op_num_threads=1, CPUExecutionProvider"
)


def split_shared_dq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` in which every DequantizeLinear output feeds exactly one node."""
    m = copy.deepcopy(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in m.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in m.graph.output}
    new_nodes = []
    for node in m.graph.node:
        new_nodes.append(node)
        if node.op_type != "DequantizeLinear":
            continue
        users = consumers.get(node.output[0], [])
        if len(users) + (node.output[0] in graph_outputs) <= 1:
            continue
        for k, user in enumerate(users[1:], start=1):
            dup = copy.deepcopy(node)
            dup.name = f"{node.name}_split{k}"
            dup.output[0] = f"{node.output[0]}_split{k}"
            for j, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[j] = dup.output[0]
            new_nodes.append(dup)
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    return m


def activations_to_uint8(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose activation QuantizeLinear/DequantizeLinear nodes with a constant int8 scalar
    zero point use uint8 with zero point + 128 — QDQS8ToU8Transformer's rewrite, applied to every such node
    rather than only to single-consumer pairs. Weight and bias DequantizeLinear nodes (constant input) are
    left as they are; the dequantized values are unchanged."""
    from onnx import numpy_helper

    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    made: set[str] = set()
    retyped: set[str] = set()
    for node in m.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            continue
        zp = inits.get(node.input[2])
        if zp is None or zp.data_type != onnx.TensorProto.INT8 or int(np.prod(zp.dims)) != 1:
            continue
        name = f"{node.input[2]}_uint8"
        if name not in made:
            value = numpy_helper.to_array(zp).astype(np.int16) + 128
            m.graph.initializer.append(numpy_helper.from_array(value.astype(np.uint8), name))
            made.add(name)
        node.input[2] = name
        if node.op_type == "QuantizeLinear":
            retyped.add(node.output[0])
    kept = [v for v in m.graph.value_info if v.name not in retyped]  # their element type is now uint8
    del m.graph.value_info[:]
    m.graph.value_info.extend(kept)
    return m


def session(model: str | Path | onnx.ModelProto, fusable: bool = True, optimized_path: str | Path | None = None):
    """An onnxruntime session with ORT_OPTIONS (after `split_shared_dq` and `activations_to_uint8` when
    fusable, so that every op runs as onnxruntime's integer kernel). `optimized_path`: where onnxruntime
    writes the graph it runs (to inspect what it fused)."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    if fusable:
        proto = activations_to_uint8(split_shared_dq(proto))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def int8_outputs(sess, x: np.ndarray, out_scale: float, out_zero_point: int, batch: int = 256) -> np.ndarray:
    """Run float inputs and recover the int8 output codes from the dequantized logits (exact: they are
    (q − zp)·scale in float32)."""
    name = sess.get_inputs()[0].name
    ys = [sess.run(None, {name: x[i : i + batch].astype(np.float32)})[0] for i in range(0, len(x), batch)]
    y = np.concatenate(ys)
    return (np.rint(y / np.float32(out_scale)) + out_zero_point).astype(np.int64)
