#!/usr/bin/env python
"""The arena's lower bound, computed from the int8 graph alone (not from TVM's memory planner).

Liveness over the op sequence: a tensor is alive from the op that writes it to the last op that reads it
(the graph input and output live in the caller's buffers, not in the arena). The bound is the largest
sum of simultaneously live tensor bytes, each rounded up to the arena alignment (16). Printed beside the
arena the compiler emitted; they are equal when the packing is optimal.

    python scripts/arena_bound.py MODEL.onnx [--build build/NAME] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ALIGN = 16


def ir_peak_bytes(graph, scratch: list[int] | None = None) -> tuple[int, int]:
    """(peak live bytes, index of the op where it occurs) over graph.ops. `scratch[i]`: bytes op i's kernel
    needs for itself during its call (the hand-written kernels' scratch, in the arena too)."""
    produced: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        for name in op.inputs:
            last_use[name] = i
        produced[op.output] = i
        last_use.setdefault(op.output, i)
    live_tensors = [n for n in produced if n not in (graph.input, graph.output)]
    best, where = 0, -1
    for i in range(len(graph.ops)):
        total = sum(
            -(-graph.tensors[n].nbytes // ALIGN) * ALIGN for n in live_tensors if produced[n] <= i <= last_use[n]
        )
        if scratch:
            total += -(-scratch[i] // ALIGN) * ALIGN
        if total > best:
            best, where = total, i
    return best, where


def compiled_graph(graph, manifest: dict):
    """The graph as the compiler lowered it (NHWC inside when the manifest says so) and each op's scratch bytes."""
    if manifest.get("compute_layout") == "NHWC":
        from divqat_tvm.compiler.layout import to_nhwc

        graph = to_nhwc(graph)
    return graph, [int(op.get("scratch_bytes", 0)) for op in manifest["ops"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="quantized QDQ ONNX model")
    ap.add_argument("--build", type=Path, help="compiled folder (default: compile into a temp folder)")
    ap.add_argument("--requant", default="fixed")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    from divqat_tvm.compiler.onnx_import import import_onnx
    from divqat_tvm.fileio import atomic_write_json

    graph = import_onnx(args.model)
    if args.build and (args.build / "manifest.json").is_file():
        manifest = json.loads((args.build / "manifest.json").read_text())
    else:
        import tempfile

        from divqat_tvm.compiler.generate import compile_onnx

        manifest = compile_onnx(
            args.model, Path(tempfile.mkdtemp(prefix="arena_bound_")) / "model", requant=args.requant
        )
    graph, scratch = compiled_graph(graph, manifest)
    bound, at = ir_peak_bytes(graph, scratch)
    result = {
        "model": str(args.model),
        "liveness_bound_bytes": bound,
        "peak_at_op": graph.ops[at].name if at >= 0 else None,
        "arena_bytes": manifest["arena_bytes"],
        "tvm_storage_bytes": manifest.get("tvm_storage_bytes"),
        "equal": manifest["arena_bytes"] == bound,
    }
    print(f"liveness lower bound (from the graph): {bound:,} bytes (at op {result['peak_at_op']})")
    print(f"emitted arena:                          {manifest['arena_bytes']:,} bytes")
    print(f"TVM storage tokens side by side:        {manifest.get('tvm_storage_bytes'):,} bytes")
    if args.json:
        atomic_write_json(args.json, result)
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
