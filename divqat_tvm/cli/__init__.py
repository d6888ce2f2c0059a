"""The `divqat-tvm` command line: one typer app; each stage registers its own commands explicitly."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from divqat_tvm.errors import DivqatError

app = typer.Typer(
    name="divqat-tvm",
    help="Train DivQAT int8 CNNs, compile them with TVM for Cortex-M, emulate, attack and report.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("divqat-tvm")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        typer.echo(f"divqat-tvm {v}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train DivQAT int8 CNNs, compile them with TVM for Cortex-M, emulate, attack and report.

    Example: divqat-tvm demo   (the whole pipeline on the embedded default; see README.md)
    """


# One example per command, shown at the end of its --help (data, kept beside the command list it mirrors).
EXAMPLES: dict[str, str] = {
    "datasets": "divqat-tvm datasets",
    "models": "divqat-tvm models",
    "train": "divqat-tvm train --dataset mnist5k --arch tinycnn --epochs 8 --out runs/teacher.pt",
    "quantize": "divqat-tvm quantize runs/teacher.pt --method divqat --alpha 2 --out runs/divqat.pt",
    "export": "divqat-tvm export runs/divqat.pt --out runs/divqat.onnx",
    "evaluate": "divqat-tvm evaluate runs/divqat.pt",
    "targets": "divqat-tvm targets",
    "compile": "divqat-tvm compile runs/divqat.onnx --target cortex-m7 --ram 320K --out build/m7",
    "build": "divqat-tvm build build/m7 --board mps2-an500",
    "emulate": "divqat-tvm emulate build/m7 --random 20",
    "flash": "divqat-tvm flash build/m7 --board nucleo-f746zg --dry-run",
    "footprint": "divqat-tvm footprint build/m7 --out build/m7/footprint.json",
    "attack": "divqat-tvm attack --attack knockoff --victim qemu:build/m7@mps2-an500 --budget 2000 --out runs/ko",
    "experiment": "divqat-tvm experiment configs/embedded.toml --out runs/exp",
    "report": "divqat-tvm report runs/exp",
    "demo": "divqat-tvm demo --out runs/demo",
}


def _add_examples() -> None:
    """Put each command's example at the end of its --help (a command without one is a test failure)."""
    for info in app.registered_commands:
        if info.name in EXAMPLES:
            info.epilog = f"Example: {EXAMPLES[info.name]}"


def _register() -> None:
    """Each stage adds its commands here, one line per stage (explicit, no folder scanning)."""
    # STAGES: (keep this list in pipeline order)
    from divqat_tvm.cli.data import register as _data

    _data(app)  # noqa: E702, I001
    from divqat_tvm.cli.models import register as _models

    _models(app)  # noqa: E702, I001
    from divqat_tvm.cli.train import register as _train

    _train(app)  # noqa: E702, I001
    app.command("targets")(targets_command)
    from divqat_tvm.cli.compile import register as _compiler

    _compiler(app)  # noqa: E702, I001
    from divqat_tvm.cli.device import register as _device

    _device(app)  # noqa: E702, I001
    from divqat_tvm.cli.attack import register as _attacks

    _attacks(app)  # noqa: E702, I001
    from divqat_tvm.cli.experiment import register as _experiment

    _experiment(app)  # noqa: E702, I001
    _add_examples()


def targets_command() -> None:
    """List the known cores and boards (the files in targets/)."""
    from rich.console import Console
    from rich.table import Table

    from divqat_tvm.targets import board_names, core_names, load_board, load_core

    table = Table("target", "kind", "core / arch", "flash", "RAM", "clock / default board")
    for n in core_names():
        c = load_core(n)
        typical = f" (typical: {c.typical_part.split(':')[0]})" if c.typical_part else ""
        table.add_row(
            n,
            "core",
            c.arch + typical,
            f"{c.typical_flash // 1024} KiB" if c.typical_flash else "",
            f"{c.typical_ram // 1024} KiB" if c.typical_ram else "",
            c.default_board or "-",
        )
    for n in board_names():
        b = load_board(n)
        table.add_row(
            n,
            b.kind,
            b.core,
            f"{b.flash.length // 1024} KiB",
            f"{b.ram.length // 1024} KiB",
            f"{b.clock_hz / 1e6:g} MHz",
        )
    Console(width=max(120, Console().width)).print(table)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: every mistake is one line on stderr naming the problem and the fix, never a traceback.

    Exit codes: 0 done; 2 a user mistake (a usage error, a DivqatError, a file the file system refuses or that is
    not UTF-8); 1 a runtime failure that is not the user's (an unexpected exception: one line, the traceback goes
    to a file it names; DIVQAT_TRACEBACK=1 shows it instead); 130 interrupted (Ctrl-C: the same command resumes).
    """
    try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        from click import exceptions as cx  # type: ignore[no-redef]

    aborted = "aborted (the same command resumes where it stopped)"
    try:
        rc = app(
            args=argv, prog_name="divqat-tvm", standalone_mode=False
        )  # usage errors come back to us instead of a boxed message
        if rc == 130:  # typer turns Ctrl-C into Exit(130)
            print(aborted, file=sys.stderr)
    except (KeyboardInterrupt, typer.Abort):
        print(aborted, file=sys.stderr)
        return 130
    except cx.ClickException as e:  # bad option, missing argument, no such command
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a bare command: its help, as click does
            print(ctx.get_help())
            return e.exit_code
        cmd = ctx.command_path if ctx is not None and ctx.command_path else "divqat-tvm"
        msg = _one_line(e.format_message()).rstrip(".")
        print(f"error: {msg}. See `{cmd} --help`.", file=sys.stderr)
        return e.exit_code if e.exit_code else 2
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except DivqatError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"error: a file is not UTF-8 text ({e.reason} at byte {e.start}). Save it as UTF-8.", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no: a path that exists, is missing, is read-only or full
        print(f"error: {_os_problem(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # a bug: one line here, the traceback in a file
        import os

        if os.environ.get("DIVQAT_TRACEBACK") == "1":
            raise
        print(
            f"error: internal error ({type(e).__name__}: {_one_line(str(e))[:300]}); the traceback is in "
            f"{_save_traceback()}. Please report it with that file.",
            file=sys.stderr,
        )
        return 1
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0


def _is_file(path: str) -> bool:
    import os

    return os.path.isfile(path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _save_traceback() -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="divqat-traceback-", suffix=".txt")
    with open(fd, "w") as f:
        f.write(traceback.format_exc())
    return path


def _os_problem(e: OSError) -> str:
    """One line naming the path, what the file system said and what to do."""
    import errno

    where = f" {e.filename}" if e.filename else ""
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and e.filename and _is_file(str(e.filename)):
        return (
            f"{e.filename} is a file, but a directory is expected there. "
            "Choose another output directory, or remove the file."
        )
    fix = {
        errno.EEXIST: "Remove it or choose another path.",
        errno.ENOTDIR: "A file stands where a directory is expected: choose another path.",
        errno.EISDIR: "A directory stands where a file is expected: name a file.",
        errno.EACCES: "Choose a path you may write to, or fix its permissions.",
        errno.EROFS: "The file system is read-only: choose another output path.",
        errno.ENOSPC: "The disk is full: free space or choose another output path.",
        errno.ENOENT: "Check the path.",
    }.get(e.errno or 0, "Check the path and its permissions.")
    return f"{e.strerror or e}:{where}. {fix}"


if __name__ == "__main__":
    sys.exit(main())
