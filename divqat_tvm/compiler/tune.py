"""Kernel choice by measurement (`divqat-tvm compile --tune`): per layer, the candidate that runs it in the fewest
instructions on the core, cached by (layer signature, core) so a later compile reuses it.

Candidates of a layer (every one exact, each tested against the numpy reference on its own):
  "native"         the hand-written kernel ops.native_call picks (csrc/), with its own column strategy;
  "native-im2col"  for a 1x1 conv that kernel reads in place (DQ_DIRECT), the same kernel through im2col;
  "native-rows"    for a conv the scratch-free kernel takes (csrc/conv_rows_s8.c), that one (faster than the
                   im2col one for some layers on some cores, slower for others);
  "te"             the TVM-scheduled TE kernel (compiler/ops/).
Layers with a single candidate (pooling, reshape, softmax, ...) are not tuned.

Measuring: candidate index k gives one whole-model variant (each layer runs its k-th candidate, or its first
when it has fewer), which the caller's `measure` compiles into firmware and runs under QEMU -icount, returning
per-operator instruction counts (the compiler does not import the device layer: cli/compile.py passes it in).
A layer's count does not depend on the other layers' kernels, so K variants measure every layer's K candidates.
The fewest instructions win; a tie keeps the earlier candidate.

Cache: a JSON file {"format_version", "entries": {key: entry}}; the key hashes the layer's signature (kind,
tensor shapes, layouts and zero points, geometry, activation range, the native kernel's variant), the core and
a digest of the kernels' C (csrc/), so an entry measured with other kernels is never reused. A compile given
the cache without `measure` uses the recorded choice where one exists (and is still a candidate), else the
first candidate: the same cache gives the same C. The manifest records per tuned layer its key, choice, the
counts and where the choice came from (`ops[].kernel.tuned`), and the cache file (`tune`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.compiler import native, ops
from divqat_tvm.compiler.graph import Graph, Op
from divqat_tvm.errors import CompileError
from divqat_tvm.fileio import atomic_write_json

FORMAT_VERSION = 1

#: build_dir -> per-operator instruction counts of that compiled folder on the tuning core (QEMU -icount)
Measure = Callable[[Path], list[float]]
#: (layer overrides {op index: NativeCall or None for TE}, out_dir) -> compiled folder
Build = Callable[[dict[int, Any], Path], Path]


@dataclass(frozen=True)
class Tuning:
    """What `generate` does about kernel choice: read choices from `cache`; with `measure`, first measure every
    candidate (variants compiled under `work_dir`) and store the winners in `cache`."""

    cache: Path
    measure: Measure | None = None
    work_dir: Path | None = None
    board: str | None = None  # the board `measure` runs on (recorded in the cache)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"shape": list(v.shape), "dtype": str(v.dtype)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)


def kernels_digest() -> str:
    """sha256 over the hand-written kernels' C: a cached choice is only valid for the kernels it was measured with."""
    h = hashlib.sha256()
    for p in sorted(native.CSRC.iterdir()):
        if p.suffix in (".c", ".h"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def layer_signature(graph: Graph, op: Op, scheme: str, core: str, default: native.NativeCall | None) -> dict[str, Any]:
    """What a layer's instruction count depends on: not its weight values, but its shapes, geometry, zero points,
    activation range and the native kernel's variant (epilogue, column strategy)."""
    attrs = {f.name: _jsonable(getattr(op, f.name)) for f in dataclasses.fields(op) if f.name not in ("name", "output")}
    attrs["inputs"] = [_tensor(graph, n) for n in op.inputs]
    return {
        "kind": op.kind,
        "class": type(op).__name__,
        "attrs": attrs,
        "output": _tensor(graph, op.output),
        "scheme": scheme,
        "native_variant": _jsonable(default.variant) if default is not None else None,
        "core": core,
        "kernels": kernels_digest(),
    }


def _tensor(graph: Graph, name: str) -> dict[str, Any]:
    t = graph.tensors[name]
    return {"shape": list(t.shape), "layout": t.layout, "zero_point": int(t.zero_point)}


def layer_key(signature: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:24]


def describe(graph: Graph, op: Op) -> str:
    """A short human label for the cache file: kind, input and output shapes."""
    ins = " + ".join("x".join(map(str, graph.tensors[n].shape)) for n in op.inputs)
    return f"{op.kind} {ins} -> {'x'.join(map(str, graph.tensors[op.output].shape))}"


# ---------------------------------------------------------------- the cache file
def load_cache(path: Path) -> dict[str, Any]:
    """The cache's entries ({} when the file does not exist yet); a file of another format is refused."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CompileError(f"the tuning cache {path} is not readable JSON ({e}).", "Delete it and tune again.") from e
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise CompileError(
            f"the tuning cache {path} is not a version-{FORMAT_VERSION} divqat-tvm tuning cache.",
            "Pass another --tune-cache, or delete the file and tune again.",
        )
    return dict(data.get("entries", {}))


def save_cache(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format_version": FORMAT_VERSION, "entries": dict(sorted(entries.items()))})


# ---------------------------------------------------------------- choosing
@dataclass
class Layer:
    """One tunable layer: its op index, candidates, cache key and label."""

    index: int
    candidates: dict[str, native.NativeCall | None]
    key: str
    label: str


def tunable_layers(graph: Graph, scheme: str, core: str) -> list[Layer]:
    layers = []
    for i, op in enumerate(graph.ops):
        cands = ops.candidates(graph, op, scheme)
        if len(cands) > 1:
            sig = layer_signature(graph, op, scheme, core, next(iter(cands.values())))
            layers.append(Layer(i, cands, layer_key(sig), describe(graph, op)))
    return layers


def cached_choices(
    graph: Graph, scheme: str, core: str, cache: Path
) -> tuple[dict[int, native.NativeCall | None], dict[int, dict[str, Any]]]:
    """(overrides for build_relax, manifest records) from the cache: each tunable layer's recorded choice, or its
    first candidate where the cache has none."""
    entries = load_cache(cache)
    overrides: dict[int, native.NativeCall | None] = {}
    records: dict[int, dict[str, Any]] = {}
    for layer in tunable_layers(graph, scheme, core):
        entry = entries.get(layer.key)
        if entry is not None and entry.get("choice") in layer.candidates:
            choice, source = entry["choice"], "cache"
        else:
            choice, source = next(iter(layer.candidates)), "default (no cache entry)"
        overrides[layer.index] = layer.candidates[choice]
        records[layer.index] = {
            "key": layer.key,
            "choice": choice,
            "source": source,
            "candidates": list(layer.candidates),
            "instructions": (entry or {}).get("instructions") if source == "cache" else None,
        }
    return overrides, records


def measure_layers(graph: Graph, scheme: str, core: str, tuning: Tuning, build: Build) -> dict[str, Any]:
    """Measure every candidate of every tunable layer (one variant per candidate index), store each layer's
    fastest in the cache, and return the entries written."""
    if tuning.measure is None or tuning.work_dir is None:
        raise CompileError(
            "measuring needs a measure function and a work folder.", "This is a compiler bug; report it."
        )
    layers = tunable_layers(graph, scheme, core)
    if not layers:
        return {}
    counts: dict[int, dict[str, float]] = {layer.index: {} for layer in layers}
    for k in range(max(len(layer.candidates) for layer in layers)):
        overrides, names = {}, {}
        for layer in layers:
            name = list(layer.candidates)[min(k, len(layer.candidates) - 1)]
            overrides[layer.index], names[layer.index] = layer.candidates[name], name
        per_op = tuning.measure(build(overrides, tuning.work_dir / f"candidate-{k}"))
        if len(per_op) != len(graph.ops):
            raise CompileError(
                f"the measurement returned {len(per_op)} operator counts for {len(graph.ops)} layers.",
                "Measure with the profiling firmware of the same compiled folder.",
            )
        for layer in layers:
            counts[layer.index].setdefault(names[layer.index], float(per_op[layer.index]))
    entries = load_cache(tuning.cache)
    written = {}
    for layer in layers:
        c = counts[layer.index]
        best = min(c, key=lambda n: (c[n], list(layer.candidates).index(n)))
        written[layer.key] = {
            "layer": layer.label,
            "core": core,
            "board": tuning.board,
            "choice": best,
            "instructions": {n: round(v) for n, v in c.items()},
        }
    entries.update(written)
    save_cache(tuning.cache, entries)
    return written
