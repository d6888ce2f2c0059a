"""The compiler's front door: `compile_model(model, target, out)` turns a quantized model file into a C library
folder built and fit-checked for a target's core.

Reading a model goes through one importer table (format → importer); everything after import is shared:
int8 Graph → Relax/TIR → C (`generate.py`), then the arm-none-eabi build of the library (`library.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divqat_tvm.compiler import library
from divqat_tvm.compiler.generate import compile_onnx
from divqat_tvm.compiler.tflite_import import compile_tflite, is_tflite
from divqat_tvm.compiler.tune import Tuning
from divqat_tvm.errors import CompileError
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.targets import resolve


@dataclass(frozen=True)
class Importer:
    """One model format: how to recognise a file of it, how to compile it, and how to read its metadata."""

    name: str
    matches: Callable[[Path], bool]
    compile: Callable[..., dict[str, Any]]
    meta: Callable[[Path], dict[str, Any]]


def _onnx_meta(model: Path) -> dict[str, Any]:
    """Our export's metadata (onnx metadata_props 'divqat_meta' as JSON); {} for models that carry none."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        m = onnx.load(str(model), load_external_data=False)
    except (DecodeError, OSError, ValueError):
        return {}  # the importer reads the file again and reports what is wrong with it
    for p in m.metadata_props:
        if p.key in ("divqat_meta", "meta"):
            try:
                return json.loads(p.value)
            except json.JSONDecodeError:
                return {"raw": p.value}
    return {}


#: model formats, tried in order; ONNX is the fallback (its importer names what is wrong with a bad file).
IMPORTERS: tuple[Importer, ...] = (
    Importer("tflite", is_tflite, compile_tflite, lambda _path: {}),
    Importer("onnx", lambda _path: True, compile_onnx, _onnx_meta),
)


def importer_for(model: Path) -> Importer:
    """The importer for a model file (by content for TFLite's flatbuffer identifier, else ONNX)."""
    return next(i for i in IMPORTERS if i.matches(model))


@dataclass(frozen=True)
class CompiledModel:
    """A compiled C library folder: `model.h`, `model.c`, `kernels.c`, `manifest.json` (+ `footprint.json`)."""

    out_dir: Path
    manifest: dict[str, Any]
    footprint: library.Footprint | None  # None when the arm build was skipped
    notes: tuple[str, ...] = ()


def compile_model(
    model: str | Path,
    target: str,
    out: str | Path,
    *,
    prefix: str = "model",
    requant: str = "fixed",
    arm: bool = True,
    flash: int | None = None,
    ram: int | None = None,
    tuning: Tuning | None = None,
) -> CompiledModel:
    """Compile a quantized model (ONNX QDQ or int8 TFLite) for a core or board.

    The fit is checked before any arm build (weights + arena against the target's flash and RAM) and again with
    the code size after it, so a model too large for the board fails early with a clear message. `flash` and
    `ram` (bytes) override the board's memory; a target that names a core is also compared with a typical
    part of that core, with a warning (in `notes`) rather than a refusal. `tuning`: choose each layer's kernel
    from a tuning cache, measuring the candidates first if it has a measure function (compiler/tune.py).
    """
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise CompileError(
            f"model file {model} does not exist or is not a file.", "Pass the path of a .onnx or .tflite model."
        )
    tgt = resolve(target)
    notes = []
    if requant == "float" and tgt.core.fpu is None:
        notes.append(f"{tgt.core.name} has no FPU; float requantization runs in software there.")
    imp = importer_for(model)
    manifest = imp.compile(
        model,
        out,
        requant=requant,
        prefix=prefix,
        target=tgt.name,
        core=tgt.core.name,
        meta=imp.meta(model),
        tuning=tuning,
    )
    fit: dict[str, Any] = {"flash": flash, "ram": ram, "named_core": tgt.board is None or tgt.core.name == target}
    fit_notes = library.check_fits(tgt, manifest["weight_bytes"], manifest["arena_bytes"], **fit)
    footprint = None
    if arm:
        footprint = library.build_library(out, tgt.core)
        fit_notes = library.check_fits(
            tgt, manifest["weight_bytes"], manifest["arena_bytes"], footprint.code_bytes, **fit
        )
        atomic_write_json(
            out / "footprint.json",
            {**footprint.as_dict(), "target": tgt.name, "board": tgt.board.name if tgt.board else None},
        )
    notes += fit_notes
    return CompiledModel(out, manifest, footprint, tuple(notes))
