"""CLI: `divqat-tvm experiment CONFIG`, `divqat-tvm report RUN_DIR`, `divqat-tvm demo`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from divqat_tvm.errors import DivqatError

# Where a grid runs and what it reuses: the same three options on `experiment` and `demo`.
CacheOpt = Annotated[
    Optional[str],
    typer.Option("--cache", help="Shared artefact and cell cache: a directory or an fsspec URL (default: OUT/cache)."),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local (worker processes) or ray (a DAG of Ray tasks; needs the divqat-tvm\\[cluster] extra).",
    ),
]
AddressOpt = Annotated[
    Optional[str],
    typer.Option("--address", help="Ray cluster to run on (HOST:PORT or auto); default: a private one on 127.0.0.1."),
]

ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar per stage (failures are always printed).")
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        min=1,
        help="torch threads per task (results are the same for any value: training and attacks fix their own numerics).",
    ),
]


def experiment_command(
    config: Path = typer.Argument(..., help="Experiment config (TOML), e.g. configs/embedded.toml."),
    profile: Optional[str] = typer.Option(
        None, "--profile", help="Budgets: quick, paper, or a profile .toml (default: the config's)."
    ),
    out: Path = typer.Option(Path("runs/exp"), "--out", help="Run directory; re-running resumes it."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: the profile's)."),
    cache: CacheOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    progress: ProgressOpt = True,
    threads: ThreadsOpt = 1,
) -> None:
    """Run a grid (dataset × victim × attack × seed) cell by cell, resumably, and write its report."""
    from divqat_tvm.experiment.config import load_experiment

    exp = load_experiment(config, profile)
    _run(exp, out, workers, cache, executor, address, threads, progress)


def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory (the --out of experiment or demo)."),
) -> None:
    """Re-render report.md, report.html and the plots from a run directory's JSON files."""
    from divqat_tvm.report.render import render_report

    paths = render_report(run_dir)
    Console().print(f"report: {paths['md']}\n        {paths['html']}")


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory; re-running resumes it."),
    backend: str = typer.Option(
        "qemu", "--backend", help="How the quantized victims answer: qemu (firmware), tvm-host or torch."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default 2)."),
    cache: CacheOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    progress: ProgressOpt = True,
    threads: ThreadsOpt = 1,
) -> None:
    """The main job: teacher, QAT and DivQAT students, compiled for Cortex-M7, run under QEMU, stolen with KnockoffNets, reported.

    Runs on the embedded default (MNIST-5k victim, digits surrogate) in about 15 minutes on 2 cores.
    """
    from divqat_tvm.experiment.config import builtin_config, load_experiment

    exp = load_experiment(builtin_config("demo"))
    if backend != exp.backend:
        if backend not in ("qemu", "tvm-host", "torch"):
            raise DivqatError(f"Unknown backend {backend!r}.", "Use qemu, tvm-host or torch.")
        exp = dataclasses.replace(exp, backend=backend)
    _run(exp, out, workers, cache, executor, address, threads, progress)


def _run(
    exp,
    out: Path,
    workers: Optional[int],
    cache: Optional[str],
    executor: str,
    address: Optional[str],
    threads: int,
    progress: bool,
) -> None:
    """Run `exp` into `out` with the options `experiment` and `demo` share, then report (exit 1 on failures)."""
    from divqat_tvm.experiment.run import run_experiment

    console = Console(stderr=True)
    summary, paths = run_experiment(
        exp,
        out,
        workers=workers,
        cache_dir=cache,
        console=console,
        executor=executor,
        address=address,
        threads=threads,
        progress=progress,
    )
    _finish(console, summary, paths, out)


def _finish(console: Console, summary, paths: dict, out: Path) -> None:
    """Print where the report is and its headline numbers; exit 1 if tasks failed (re-run resumes)."""
    from divqat_tvm.report.render import headline

    out_console = Console()
    out_console.print(f"\n[bold]Report[/bold]: {paths['md']}\n        {paths['html']}")
    for line in headline(out):
        print(f"  {line}")
    reused = f" ({len(summary.from_cache)} from the cell cache)" if summary.from_cache else ""
    console.print(
        f"{len(summary.ran)} task(s) ran, {len(summary.cached)} were already finished{reused}"
        + (
            f", {len(summary.failed)} failed, {len(summary.skipped)} skipped (re-run to retry)"
            if not summary.ok
            else ""
        )
    )
    if not summary.ok:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    """Add experiment, report and demo to the CLI."""
    app.command("experiment")(experiment_command)
    app.command("report")(report_command)
    app.command("demo")(demo_command)
