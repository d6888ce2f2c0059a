"""`divqat-tvm build | emulate | flash | footprint`: firmware from a compiled model, run under QEMU,
flashed to a board, and its footprint."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from pathlib import Path
from typing import Annotated, Optional

import typer

from divqat_tvm.errors import DivqatError

BuildDir = Annotated[Path, typer.Argument(help="A compiled model directory (divqat-tvm compile).")]
BoardOpt = Annotated[str, typer.Option("--board", help="Board from targets/boards (divqat-tvm targets).")]
DefenseOpt = Annotated[
    Optional[str],
    typer.Option("--defense", help="rs:beta=B,gamma=G or dcp:beta=B,gamma=G,nu=N, compiled into the firmware."),
]


def build_command(
    build_dir: BuildDir,
    board: BoardOpt = "mps2-an500",
    defense: DefenseOpt = None,
    profile: Annotated[bool, typer.Option("--profile", help="Record per-operator counts (STATS).")] = False,
    stack_bytes: Annotated[int, typer.Option("--stack-bytes", help="Size of the painted stack region.")] = 16 * 1024,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if nothing changed.")] = False,
) -> None:
    """Build the firmware (ELF, BIN, HEX, map, footprint.json) for one board."""
    from rich.console import Console

    from divqat_tvm.device.build import build_firmware

    fb = build_firmware(build_dir, board, defense, profile=profile, stack_bytes=stack_bytes, force=force)
    fp = fb.out_dir / "footprint.json"
    import json

    d = json.loads(fp.read_text())
    Console().print(
        f"[bold]{fb.elf}[/bold]\n{fb.bin}\n{fb.hex}\nflash {d['flash_bytes']:,} bytes, "
        f"static RAM {d['ram_bytes']:,} bytes (stack region {stack_bytes:,}); footprint: {fp}"
    )
    for w in fb.info.get("warnings", []):
        Console(stderr=True).print(f"[yellow]warning[/yellow] {w}")


def _load_inputs(path: Path | None, random_n: int | None, manifest: dict, seed: int) -> np.ndarray:
    """int8 rows: a .npy of float32 [N,C,H,W] in the model's input space (quantized like any query) or of int8."""
    import numpy as np

    from divqat_tvm.oracle.backend_tvm_host import model_io, quantize_input

    if path is not None:
        if not path.is_file():
            raise DivqatError(f"{path} does not exist.", "Pass a .npy file of inputs.")
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DivqatError(
                f"{path} is not a readable .npy array ({e}).", "Save the inputs with numpy.save."
            ) from None
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise DivqatError(f"{path} holds no array of inputs.", "Save an array [N, ...] with numpy.save.")
        if x.dtype == np.int8:
            return x.reshape(len(x), -1)
        shape, _ = model_io(manifest)
        x = np.asarray(x, np.float32)
        if tuple(x.shape[1:]) != shape:
            raise DivqatError(
                f"{path} holds {x.shape}, the model takes [N, {', '.join(map(str, shape))}].",
                "Save inputs of the model's input shape (or int8 rows).",
            )
        return quantize_input(x, manifest)
    n = random_n or 10
    size = int(np.prod(manifest["input"]["shape"]))
    return np.random.default_rng(seed).integers(-128, 128, (n, size)).astype(np.int8)


def emulate_command(
    build_dir: BuildDir,
    board: BoardOpt = "mps2-an500",
    defense: DefenseOpt = None,
    inputs: Annotated[Optional[Path], typer.Option("--inputs", help=".npy: float32 [N,C,H,W] or int8 rows.")] = None,
    random: Annotated[Optional[int], typer.Option("--random", help="N random int8 inputs (default 10).")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Also count each operator.")] = False,
    transfer: Annotated[str, typer.Option("--transfer", help="shared (QEMU shared RAM) or uart.")] = "shared",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the figures here (JSON).")] = None,
) -> None:
    """Run inferences on the firmware under QEMU; print outputs and instructions per inference (and per operator)."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.device.emulator import QemuRunner, ns_per_tick
    from divqat_tvm.device.footprint import unit_of
    from divqat_tvm.fileio import atomic_write_json

    if transfer not in ("shared", "uart"):
        raise DivqatError(f"unknown --transfer {transfer!r}.", "Use shared (QEMU shared RAM) or uart.")
    fb = build_firmware(build_dir, board, defense, profile=profile)
    xs = _load_inputs(inputs, random, fb.manifest, seed)
    con = Console()
    results, stats = [], []
    with QemuRunner(fb, shared_ram=transfer == "shared") as r:
        link, info = r.connection()
        con.print(
            f"{link.hello}  (cpuid {info.cpuid:#010x}, timer {info.timer}, input {info.input_size} int8, "
            f"transfer {'shared RAM' if r.shared else 'UART'})"
        )
        for x in tqdm(xs, desc="inferences", unit="inf"):
            results.append(r.infer(x))
            if profile:
                stats.append(r.connection()[0].stats())
    unit = unit_of(info.qemu, info.timer)
    k = ns_per_tick(info.clock_hz)
    model = np.array([res.model_ticks for res in results]) * k
    post = np.array([res.post_ticks for res in results]) * k
    top1 = np.array([int(np.argmax(res.probs)) for res in results])
    con.print(f"{len(results)} inferences; top-1 histogram: {np.bincount(top1, minlength=info.output_size).tolist()}")
    con.print(
        f"first output: int8 {results[0].logits.tolist()} -> probabilities {np.round(results[0].probs, 4).tolist()}"
    )
    con.print(
        f"model{' (profiling build: includes its hooks)' if profile else ''}: {model.mean():,.0f} {unit} per inference (min {model.min():,.0f}, max {model.max():,.0f}, "
        f"resolution {k:g}); softmax + defence: {post.mean():,.0f}; peak stack "
        f"{max(res.stack_peak for res in results):,} bytes"
    )
    macs = int(fb.manifest.get("macs", 0) or 0)
    if macs:
        con.print(f"{macs:,} MACs: {model.mean() / macs:.2f} {unit.split(' ')[0]} per MAC")
    figures = {
        "board": board,
        "unit": unit,
        "inferences": len(results),
        "model_mean": float(model.mean()),
        "postprocess_mean": float(post.mean()),
        "stack_peak_bytes": max(res.stack_peak for res in results),
        "top1": top1.tolist(),
    }
    if profile:
        ops = fb.manifest.get("ops", [])
        per_op = np.mean([s.op_ticks for s in stats], axis=0) * k
        table = Table("#", "operator", "kind", "MACs", unit, "per MAC", title="per operator (profiling build)")
        for i, v in enumerate(per_op):
            op = ops[i] if i < len(ops) else {}
            m = int(op.get("macs", 0) or 0)
            table.add_row(
                str(i),
                str(op.get("name", f"op{i}")),
                str(op.get("kind", "")),
                f"{m:,}",
                f"{v:,.0f}",
                f"{v / m:.2f}" if m else "",
            )
        con.print(table)
        con.print(f"sum of operators {per_op.sum():,.0f} vs total {model.mean():,.0f} {unit}")
        figures["per_operator"] = per_op.tolist()
    if json_out:
        atomic_write_json(json_out, figures)


def flash_command(
    build_dir: BuildDir,
    board: BoardOpt = "nucleo-h743zi2",
    defense: DefenseOpt = None,
    tool: Annotated[
        Optional[str], typer.Option("--tool", help="openocd or pyocd (default: what is installed).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command, do not run it.")] = False,
    protect: Annotated[bool, typer.Option("--protect", help="Also set read-out protection.")] = False,
) -> None:
    """Build the board's firmware if needed and flash it through OpenOCD or pyOCD."""
    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.device.flash import flash_plan, run_flash
    from divqat_tvm.targets import load_board

    if load_board(board).is_qemu:
        raise DivqatError(
            f"board '{board}' is a QEMU machine; there is nothing to flash.",
            f"Run it with `divqat-tvm emulate {build_dir} --board {board}`.",
        )
    fb = build_firmware(build_dir, board, defense)
    plan = flash_plan(fb, tool, protect, dry_run)
    typer.echo(plan.command_line)
    for note in plan.notes:
        typer.echo(f"note: {note}")
    if not dry_run:
        typer.echo(run_flash(plan))


def footprint_command(
    build_dir: BuildDir,
    board: BoardOpt = "mps2-an500",
    defense: DefenseOpt = None,
    inputs: Annotated[int, typer.Option("--inputs", help="Random inputs to measure on.")] = 3,
    port: Annotated[Optional[str], typer.Option("--port", help="A real board's serial port (cycles).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory for footprint.json/.md/.png.")] = None,
) -> None:
    """Flash, RAM, stack, instructions (QEMU) or cycles (board) per inference and per operator: JSON, Markdown, PNG."""
    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.device.footprint import measure_footprint
    from divqat_tvm.report.footprint import write_footprint

    fp = measure_footprint(build_dir, board, defense, n=inputs, port=port)
    paths = write_footprint(fp, out or build_firmware(build_dir, board, defense).out_dir)
    typer.echo(paths["md"].read_text())
    typer.echo(" ".join(str(p) for p in paths.values()))


def register(app: typer.Typer) -> None:
    """Add this package's commands to the CLI."""
    app.command("build")(build_command)
    app.command("emulate")(emulate_command)
    app.command("flash")(flash_command)
    app.command("footprint")(footprint_command)
