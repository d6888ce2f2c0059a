"""compile: QDQ ONNX → int8 Graph → Relax/TIR → C library folder (no arm build; see library.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from divqat_tvm.compiler import fuse, inplace, lower, ops, tune
from divqat_tvm.compiler.emit import write_artifact, write_cmake_lists
from divqat_tvm.compiler.graph import Graph
from divqat_tvm.compiler.layout import to_nhwc
from divqat_tvm.compiler.onnx_import import file_sha256, import_onnx
from divqat_tvm.errors import CompileError

_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def generate(
    graph: Graph,
    out_dir: str | Path,
    *,
    requant: str = "fixed",
    prefix: str = "model",
    manifest: dict[str, Any] | None = None,
    kernels: str = "native",
    tuning: tune.Tuning | None = None,
    overrides: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """Lower an int8 Graph with TVM and write model.h/model.c/kernels.c/manifest.json into out_dir.

    `kernels`: "native" (default) runs the layers the hand-written C kernels handle with them (compiler/ops/);
    "te" keeps every op on TVM-scheduled TE kernels. The choice per op is in the manifest (`ops[].kernel`).
    `tuning`: choose among each layer's candidate kernels by the tuning cache, measuring them first when it
    has a measure function (tune.py). `overrides`: {op index: NativeCall or None} fixed by the caller."""
    if not _C_IDENT.match(prefix):
        raise CompileError(f"prefix '{prefix}' is not a C identifier.", "Use letters, digits and underscores.")
    tvm_version = lower.check_tvm_version()
    t0 = time.perf_counter()
    if kernels == "native":  # a conv and its residual ADD as one kernel where that lowers the arena (fuse.py)
        graph = fuse.where_it_lowers_the_peak(graph, requant)
    records: dict[int, dict[str, Any]] = {}
    if tuning is not None and kernels == "native":
        core = (manifest or {}).get("core")
        if not core:
            raise CompileError("kernel tuning needs a core (its choices are per core).", "Compile for a named core.")
        if tuning.measure is not None:

            def build(ov: dict[int, Any], d: Path) -> Path:
                generate(graph, d, requant=requant, prefix=prefix, manifest=manifest, kernels=kernels, overrides=ov)
                return d

            tune.measure_layers(graph, requant, core, tuning, build)
        overrides, records = tune.cached_choices(graph, requant, core, tuning.cache)
    if kernels == "native":  # the scratch-free conv for the layers whose scratch sets the arena's peak
        given = overrides or {}
        calls = {i: given[i] if i in given else ops.native_call(graph, op, requant) for i, op in enumerate(graph.ops)}
        overrides = {**calls, **inplace.scratch_free(graph, requant, calls, set(given)), **given}  # selected once
    chosen: dict[int, Any] = {}
    mod = lower.plan(lower.build_relax(graph, requant, prefix, kernels=kernels, chosen=chosen, overrides=overrides))
    plan = lower.read_plan(mod)
    arena = {n for n, t in plan.tensors.items() if t.kind == "arena"}
    plan.overlaps = inplace.overlaps([(c.func, c.args) for c in plan.calls], chosen, arena)
    kernels_c = lower.build_c(plan.prim_funcs)
    info = {"requant": requant, "tvm_version": tvm_version, **(manifest or {})}
    info["conv_dot"] = lower.conv_dot_kernel(kernels_c, info.get("core"))
    op_kernels = [ops.manifest_entry(chosen.get(i), info.get("core")) for i in range(len(graph.ops))]
    for i, allowed in inplace.op_inplace(chosen).items():
        op_kernels[i]["inplace"] = allowed
    for i, rec in records.items():
        op_kernels[i]["tuned"] = rec
    if tuning is not None:
        info["tune"] = {"cache": str(tuning.cache), "measured": tuning.measure is not None, "board": tuning.board}
    out = write_artifact(Path(out_dir), graph, plan, kernels_c, prefix, info, op_kernels)
    write_cmake_lists(Path(out_dir), prefix, out.get("sources"))
    out["compile_seconds"] = round(time.perf_counter() - t0, 3)
    return out


def compile_onnx(
    model: str | Path,
    out_dir: str | Path,
    *,
    requant: str = "fixed",
    prefix: str = "model",
    target: str | None = None,
    core: str | None = None,
    meta: dict[str, Any] | None = None,
    kernels: str = "native",
    compute_layout: str = "NHWC",
    tuning: tune.Tuning | None = None,
) -> dict[str, Any]:
    """Import a QDQ ONNX model and generate its C library (the manifest names target and core).

    `compute_layout` "NHWC" (default) converts the NCHW graph to NHWC activations inside (layout.to_nhwc; the
    input stays NCHW), so its convolutions can run on the NHWC kernels; "NCHW" keeps the graph as imported."""
    if compute_layout not in ("NHWC", "NCHW"):
        raise CompileError(f"unknown compute layout '{compute_layout}'.", "Use NHWC or NCHW.")
    model = Path(model)
    graph = import_onnx(model)
    if compute_layout == "NHWC":
        graph = to_nhwc(graph)
    name = Path(out_dir).name
    info = {
        "name": name,
        "target": target,
        "core": core,
        "source_model": {"path": str(model), "sha256": file_sha256(model)},
        "meta": meta or {},
        "compute_layout": "NHWC" if any(t.layout == "NHWC" for t in graph.tensors.values()) else "NCHW",
    }
    return generate(graph, out_dir, requant=requant, prefix=prefix, manifest=info, kernels=kernels, tuning=tuning)
