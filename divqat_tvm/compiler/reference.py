"""A numpy interpreter of the int8 graph: the independent reference the compiled C is tested against.

Each operator's reference is its family's (compiler/ops/), written the plain way (zero points subtracted inside
the sums, padding as a real zero), not the way the TE kernels do (zero points folded into the bias, padding never
read), so the two only agree if both are right.
"""

from __future__ import annotations

import numpy as np

from divqat_tvm.compiler import ops
from divqat_tvm.compiler.graph import Graph


def run_reference(graph: Graph, x: np.ndarray, scheme: str = "fixed") -> np.ndarray:
    """Run int8 input [N, ...] (the graph's input shape with any N) through the graph; int8 output."""
    env: dict[str, np.ndarray] = {graph.input: np.asarray(x, dtype=np.int8)}
    for op in graph.ops:
        env[op.output] = ops.reference(graph, op, [env[n] for n in op.inputs], scheme).astype(np.int8)
    return env[graph.output]
