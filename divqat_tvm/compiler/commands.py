"""`divqat-tvm compile MODEL.onnx --target cortex-m7 --out build/NAME`: generate the C library, build it
with arm-none-eabi-gcc for the target's core, print the footprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def compile_for_target(model: Path, out: Path, target_name: str, requant: str = "fixed", prefix: str = "model",
                       arm: bool = True) -> tuple[dict[str, Any], Any]:
    """Generate, check the fit (before any arm build), build for the core; returns (manifest, footprint)."""
    from divqat_tvm.compiler import toolchain
    from divqat_tvm.compiler.pipeline import compile_onnx
    from divqat_tvm.fileio import atomic_write_json
    from divqat_tvm.targets import resolve

    target = resolve(target_name)
    if requant == "float" and target.core.fpu is None:
        typer.echo(f"note: {target.core.name} has no FPU; float requantization runs in software there.", err=True)
    from divqat_tvm.compiler.tflite_import import compile_tflite, is_tflite

    compile_model = compile_tflite if is_tflite(model) else compile_onnx  # .tflite: int8 TFLite (NHWC, TFLite semantics)
    manifest = compile_model(model, out, requant=requant, prefix=prefix, target=target.name, core=target.core.name,
                            meta=_checkpoint_meta(model))
    toolchain.check_fits(target, manifest["weight_bytes"], manifest["arena_bytes"])
    footprint = None
    if arm:
        footprint = toolchain.build_library(out, target.core)
        toolchain.check_fits(target, manifest["weight_bytes"], manifest["arena_bytes"], footprint.code_bytes)
        atomic_write_json(out / "footprint.json", {**footprint.as_dict(), "target": target.name,
                                                  "board": target.board.name if target.board else None})
    return manifest, footprint


def _checkpoint_meta(model: Path) -> dict[str, Any]:
    """The export's metadata (onnx metadata_props 'divqat_meta' as JSON), if any."""
    import json

    import onnx

    try:
        m = onnx.load(str(model), load_external_data=False)
    except Exception:
        return {}
    for p in m.metadata_props:
        if p.key in ("divqat_meta", "meta"):
            try:
                return json.loads(p.value)
            except json.JSONDecodeError:
                return {"raw": p.value}
    return {}


def compile_command(
    model: Annotated[Path, typer.Argument(help="Quantized QDQ ONNX model (our export or onnxruntime quantize_static).")],
    target: Annotated[str, typer.Option("--target", help="A core (cortex-m7) or a board (nucleo-h743zi2).")] = "cortex-m7",
    out: Annotated[Path, typer.Option("--out", help="Output folder, e.g. build/resnet8.")] = Path("build/model"),
    requant: Annotated[str, typer.Option("--requant", help='"fixed" (TFLite/CMSIS-NN, integer only) or "float" (onnxruntime/MLAS).')] = "fixed",
    prefix: Annotated[str, typer.Option("--prefix", help="C prefix of the run function and symbols.")] = "model",
) -> None:
    """Compile a quantized ONNX model to a standalone C library for a Cortex-M core and print its footprint."""
    from rich.console import Console
    from rich.table import Table

    manifest, fp = compile_for_target(model, out, target, requant, prefix)
    table = Table("item", "bytes", title=f"{manifest['name']} for {manifest['target']} ({manifest['core']}, requant {requant})")
    table.add_row("weights (flash)", f"{fp.weight_bytes:,}")
    table.add_row("code (flash)", f"{fp.code_bytes:,}")
    table.add_row("flash total", f"{fp.flash_bytes:,}")
    table.add_row("arena (RAM)", f"{manifest['arena_bytes']:,}")
    table.add_row("RAM total (data+bss)", f"{fp.ram_bytes:,}")
    Console().print(table)
    Console().print(f"{len(manifest['ops'])} ops, {manifest['macs']:,} MACs; wrote {out}/model.h, model.c, kernels.c, manifest.json")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
