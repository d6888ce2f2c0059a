#!/usr/bin/env python
"""The arena's lower bound, computed from the int8 graph alone (not from TVM's or our memory planner).

Liveness over the op sequence: a tensor is alive from the op that writes it to the last op that reads it
(the graph input and output live in the caller's buffers, not in the arena). At each op the live tensors'
bytes, each rounded up to the arena alignment (16), plus the op's kernel scratch, minus what the op saves by
writing its output over an input that dies there, where its kernel allows that (manifest ops[].inplace: the
residual add over either input, a conv over its input starting `lead_bytes` below it, a conv fused with its
residual ADD exactly over the residual (`exact`); compiler/inplace.py proves each from the kernel's order of
reads and writes). A conv fused with its ADD (manifest kind "conv2d_add", compiler/fuse.py) is one op: the
conv's own output is never stored. The bound is the largest such sum; it is printed
beside the arena the compiler emitted, and they are equal when the packing is optimal.

What it does not assume: any other sharing (a depthwise or TE kernel over its input, a conv output over an
input that lives on, the scratch inside a dead tensor), since no kernel we have does that exactly.

    python scripts/arena_bound.py MODEL.onnx|MODEL.tflite [--build build/NAME] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ALIGN = 16


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def ir_peak_bytes(graph, scratch: list[int] | None = None, inplace: list[dict | None] | None = None) -> tuple[int, int]:
    """(peak live bytes, index of the op where it occurs) over graph.ops. `scratch[i]`: bytes op i's kernel
    needs for itself during its call (the hand-written kernels' scratch, in the arena too); `inplace[i]`: the
    manifest's ops[i].inplace ({"inputs": positions, "lead_bytes": L}) or None."""
    produced: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        for name in op.inputs:
            last_use[name] = i
        produced[op.output] = i
        last_use.setdefault(op.output, i)
    outside = (graph.input, graph.output)
    live_tensors = [n for n in produced if n not in outside]
    best, where = 0, -1
    for i, op in enumerate(graph.ops):
        total = sum(_aligned(graph.tensors[n].nbytes) for n in live_tensors if produced[n] <= i <= last_use[n])
        if scratch:
            total += _aligned(scratch[i])
        allowed = (inplace or [None] * len(graph.ops))[i]
        if allowed and op.output not in outside:
            out_b = _aligned(graph.tensors[op.output].nbytes)
            dying = [op.inputs[k] for k in allowed["inputs"] if op.inputs[k] not in outside]
            dying = [n for n in dying if last_use[n] == i]
            total -= max(
                (
                    min(max(out_b - _aligned(allowed["lead_bytes"]), 0), _aligned(graph.tensors[n].nbytes))
                    for n in dying
                ),
                default=0,
            )
        if total > best:
            best, where = total, i
    return best, where


def compiled_graph(graph, manifest: dict):
    """The graph as the compiler lowered it (NHWC inside when the manifest says so), each op's scratch bytes and
    its allowed overlaps."""
    if manifest.get("compute_layout") == "NHWC":
        from divqat_tvm.compiler.layout import to_nhwc

        graph = to_nhwc(graph)
    ops = manifest["ops"]
    fused = {op["name"] for op in ops if op.get("kind") == "conv2d_add"}
    if fused:  # convs run with their residual ADD (compiler/fuse.py): the same pairs as one op each
        from divqat_tvm.compiler.fuse import residual_adds

        graph = residual_adds(graph, manifest.get("requant", "fixed"), fused)
    if [op.name for op in graph.ops] != [op["name"] for op in ops]:
        raise SystemExit("arena_bound: the manifest's ops are not this model's (compile it again).")
    return graph, [int(op.get("scratch_bytes", 0)) for op in ops], [op.get("inplace") for op in ops]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="quantized QDQ ONNX model or int8 TFLite model")
    ap.add_argument("--build", type=Path, help="compiled folder (default: compile into a temp folder)")
    ap.add_argument("--requant", default="fixed")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    from divqat_tvm.compiler.onnx_import import import_onnx
    from divqat_tvm.compiler.tflite_import import compile_tflite, import_tflite, is_tflite
    from divqat_tvm.fileio import atomic_write_json

    tflite = is_tflite(args.model)
    graph = import_tflite(args.model) if tflite else import_onnx(args.model)
    if args.build and (args.build / "manifest.json").is_file():
        manifest = json.loads((args.build / "manifest.json").read_text())
    else:
        import tempfile

        from divqat_tvm.compiler.generate import compile_onnx

        out = Path(tempfile.mkdtemp(prefix="arena_bound_")) / "model"
        if tflite:
            manifest = compile_tflite(args.model, out, requant=args.requant)
        else:
            manifest = compile_onnx(args.model, out, requant=args.requant)
    graph, scratch, inplace = compiled_graph(graph, manifest)
    bound, at = ir_peak_bytes(graph, scratch, inplace)
    plain, plain_at = ir_peak_bytes(graph, scratch)
    result = {
        "model": str(args.model),
        "liveness_bound_bytes": bound,
        "peak_at_op": graph.ops[at].name if at >= 0 else None,
        "liveness_bound_without_overlaps_bytes": plain,
        "arena_bytes": manifest["arena_bytes"],
        "planner_bound_bytes": manifest.get("arena_bound_bytes"),
        "tvm_storage_bytes": manifest.get("tvm_storage_bytes"),
        "equal": manifest["arena_bytes"] == bound,
    }
    print(f"liveness lower bound (from the graph):  {bound:,} bytes (at op {result['peak_at_op']})")
    print(f"  without any output over its input:    {plain:,} bytes (at op {graph.ops[plain_at].name})")
    print(f"emitted arena:                          {manifest['arena_bytes']:,} bytes")
    if manifest.get("tvm_storage_bytes") is not None:
        print(f"TVM storage tokens side by side:        {manifest['tvm_storage_bytes']:,} bytes")
    if args.json:
        atomic_write_json(args.json, result)
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
