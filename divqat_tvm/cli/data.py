"""`divqat-tvm datasets`: what datasets exist and whether their files are where the loaders look."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from divqat_tvm.errors import DivqatError


def _missing(name: str, root: Path) -> list[str] | None:
    """Files of a downloadable dataset absent under `root` ([] if all found), None for built-in data."""
    from divqat_tvm.data.cifar import cifar_files
    from divqat_tvm.data.files import find_folder
    from divqat_tvm.data.svhn import SVHN_FOLDER, svhn_file

    if name in ("cifar10", "cifar100"):
        wanted = [cifar_files(name, s) for s in ("train", "test")]
    elif name == "svhn":
        wanted = [(SVHN_FOLDER, [svhn_file(s)]) for s in ("train", "test")]
    else:
        return None
    return [f"{folder}/{f}" for folder, files in wanted for f in files if find_folder(root, folder, [f]) is None]


def _source(name: str) -> str:
    from divqat_tvm.data.cifar import CIFAR_SOURCE
    from divqat_tvm.data.svhn import SVHN_SOURCE

    return SVHN_SOURCE if name == "svhn" else CIFAR_SOURCE


def datasets_command(
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", help="Directory holding downloaded datasets (default: $DIVQAT_DATA, else ./data)."),
    ] = None,
) -> None:
    """List the datasets: input shape, classes, normalisation, and whether their files are present."""
    from rich.console import Console
    from rich.table import Table

    from divqat_tvm.data import dataset_info, dataset_names
    from divqat_tvm.data.files import resolve_data_dir

    root = resolve_data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DivqatError(f"--data-dir {root} is not a directory.", "Pass the directory holding the datasets.")
    console = Console()
    table = Table("dataset", "shape", "classes", "mean", "std", "files", title=f"datasets (data dir: {root.resolve()})")
    absent: dict[str, list[str]] = {}
    for name in dataset_names():
        info = dataset_info(name)
        missing = _missing(name, root)
        if missing:
            absent[name] = missing
        status = "built in" if missing is None else ("missing" if missing else "found")
        fmt = lambda v: " ".join(f"{x:.2f}" for x in v)  # noqa: E731
        shape = "x".join(map(str, info.input_shape))
        table.add_row(name, shape, str(info.num_classes), fmt(info.mean), fmt(info.std), status)
    console.print(table)
    console.print('synthetic also takes a shape and class count, e.g. "synthetic:1x28x28:10".')
    for name, missing in absent.items():
        console.print(
            f"{name}: missing {', '.join(missing)} under {root.resolve()} (from {_source(name)})", soft_wrap=True
        )


def register(app: typer.Typer) -> None:
    """Add this package's commands to the CLI."""
    app.command("datasets")(datasets_command)
