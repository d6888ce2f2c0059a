"""`divqat-tvm compile MODEL.onnx --target cortex-m7 --out build/NAME`: generate the C library, build it
with arm-none-eabi-gcc for the target's core, print the footprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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

    from divqat_tvm.compiler.api import compile_model

    cm = compile_model(model, target, out, prefix=prefix, requant=requant)
    for note in cm.notes:
        typer.echo(f"note: {note}", err=True)
    manifest, fp = cm.manifest, cm.footprint
    assert fp is not None
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
