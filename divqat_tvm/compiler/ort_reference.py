"""onnxruntime as the reference of the "float" requantization scheme, with fixed, named options.

Session: GraphOptimizationLevel.ORT_ENABLE_ALL, 1 intra-op thread, 1 inter-op thread, CPUExecutionProvider.
With these options onnxruntime fuses DQ → op → Q into its integer kernels (QLinearConv, QLinearAdd,
QLinearGlobalAveragePool, QGemm) — but only where each DequantizeLinear has a single consumer. A DQ shared
by two consumers (a residual block's input feeding both the conv and the add) leaves the float op in
place, and a float32 conv is not bit-reproducible. `split_shared_dq` gives each consumer its own DQ
(the same arithmetic, the form onnxruntime's own quantize_static writes), so every op is fused.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx

ORT_OPTIONS = "GraphOptimizationLevel.ORT_ENABLE_ALL, intra_op_num_threads=1, inter_op_num_threads=1, CPUExecutionProvider"


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


def session(model: str | Path | onnx.ModelProto, fusable: bool = True):
    """An onnxruntime session with ORT_OPTIONS (after `split_shared_dq` when fusable)."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    if fusable:
        proto = split_shared_dq(proto)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def int8_outputs(sess, x: np.ndarray, out_scale: float, out_zero_point: int, batch: int = 256) -> np.ndarray:
    """Run float inputs and recover the int8 output codes from the dequantized logits (exact: they are
    (q − zp)·scale in float32)."""
    name = sess.get_inputs()[0].name
    ys = [sess.run(None, {name: x[i:i + batch].astype(np.float32)})[0] for i in range(0, len(x), batch)]
    y = np.concatenate(ys)
    return (np.rint(y / np.float32(out_scale)) + out_zero_point).astype(np.int64)
