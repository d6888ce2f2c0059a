"""`divqat-tvm compile MODEL.onnx --target cortex-m7 --out build/NAME`: generate the C library, build it
with arm-none-eabi-gcc for the target's core, print the footprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}


def parse_size(text: str | None) -> int | None:
    """ "512K", "1M", "1.5MiB" or a plain byte count -> bytes (binary units, as datasheets give memory)."""
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise typer.BadParameter(f"'{text}' is not a size; write e.g. 512K, 1M or 65536 (bytes).")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


DEFAULT_TUNE_CACHE = Path.home() / ".cache" / "divqat-tvm" / "tune-cache.json"


def tuning_for(target: str, out: Path, cache: Path, measure: bool) -> Any:
    """The compiler's Tuning for --tune / --tune-cache: with --tune, per-operator instruction counts of the
    profiling firmware on the core's QEMU board; without it the cache alone (no cache file: the defaults)."""
    from divqat_tvm.compiler.tune import Tuning

    if not measure:
        return Tuning(cache) if cache.is_file() else None
    from divqat_tvm.targets import load_board, resolve

    core = resolve(target).core
    board = core.default_board
    if board is None or not load_board(board).is_qemu:
        raise typer.BadParameter(
            f"--tune measures under QEMU, and {core.name} has no emulated board.", param_hint="--tune"
        )

    def per_operator(build_dir: Path) -> list[float]:
        from divqat_tvm.device.footprint import measure_qemu

        return [row["count"] for row in measure_qemu(build_dir, board, n=1)["per_operator"]]

    return Tuning(cache, per_operator, work_dir=out.parent / f"{out.name}-tune", board=board)


def compile_command(
    model: Annotated[
        Path, typer.Argument(help="Quantized QDQ ONNX model (our export or onnxruntime quantize_static).")
    ],
    target: Annotated[
        str, typer.Option("--target", help="A core (cortex-m7) or a board (nucleo-h743zi2).")
    ] = "cortex-m7",
    out: Annotated[Path, typer.Option("--out", help="Output folder, e.g. build/resnet8.")] = Path("build/model"),
    requant: Annotated[
        str, typer.Option("--requant", help='"fixed" (TFLite/CMSIS-NN, integer only) or "float" (onnxruntime/MLAS).')
    ] = "fixed",
    prefix: Annotated[str, typer.Option("--prefix", help="C prefix of the run function and symbols.")] = "model",
    flash: Annotated[
        Optional[str], typer.Option("--flash", help="Your part's flash (e.g. 512K): refuse if the model does not fit.")
    ] = None,
    ram: Annotated[
        Optional[str], typer.Option("--ram", help="Your part's RAM (e.g. 128K): refuse if the model does not fit.")
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Measure each layer's candidate kernels under QEMU -icount on the core's emulated board, keep the "
            "fastest and store the choice in the tuning cache.",
        ),
    ] = False,
    tune_cache: Annotated[
        Path,
        typer.Option(
            "--tune-cache",
            help="Tuning cache (JSON): written by --tune; a compile without --tune uses the choices it holds.",
            envvar="DIVQAT_TUNE_CACHE",
        ),
    ] = DEFAULT_TUNE_CACHE,
) -> None:
    """Compile a quantized model (ONNX QDQ or int8 TFLite) to a standalone C library for a Cortex-M core.

    Prints the footprint.
    """
    from rich.console import Console
    from rich.table import Table

    from divqat_tvm.compiler.api import compile_model

    cm = compile_model(
        model,
        target,
        out,
        prefix=prefix,
        requant=requant,
        flash=parse_size(flash),
        ram=parse_size(ram),
        tuning=tuning_for(target, out, tune_cache, tune),
    )
    for note in cm.notes:
        typer.echo(f"note: {note}", err=True)
    manifest, fp = cm.manifest, cm.footprint
    assert fp is not None
    table = Table(
        "item", "bytes", title=f"{manifest['name']} for {manifest['target']} ({manifest['core']}, requant {requant})"
    )
    table.add_row("weights (flash)", f"{fp.weight_bytes:,}")
    table.add_row("code (flash)", f"{fp.code_bytes:,}")
    table.add_row("flash total", f"{fp.flash_bytes:,}")
    table.add_row("arena (RAM)", f"{manifest['arena_bytes']:,}")
    table.add_row("RAM total (data+bss)", f"{fp.ram_bytes:,}")
    Console().print(table)
    Console().print(
        f"{len(manifest['ops'])} ops, {manifest['macs']:,} MACs; wrote {out}/model.h, model.c, kernels.c, manifest.json"
    )
    tuned = [o for o in manifest["ops"] if "tuned" in o.get("kernel", {})]
    if tuned:
        picks = ", ".join(f"{o['name']}: {o['kernel']['tuned']['choice']}" for o in tuned)
        Console().print(f"kernels by tuning cache {manifest['tune']['cache']}: {picks}")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
