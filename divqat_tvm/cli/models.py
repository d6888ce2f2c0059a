"""`divqat-tvm models`: the registry's architectures with their parameter and MAC counts."""

from __future__ import annotations

from typing import Annotated

import typer

from divqat_tvm.errors import DivqatError


def parse_shape(text: str) -> tuple[int, int, int]:
    """ "3x32x32" → (3, 32, 32).

    Raises:
        DivqatError: not three positive integers joined by "x", or a non-square image.
    """
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DivqatError(f"Input shape {text!r} is not CxHxW.", 'Write it like "3x32x32".') from None
    if min(c, h, w) < 1 or h != w:
        raise DivqatError(f"Input shape {text!r} must be positive and square.", 'Write it like "3x32x32".')
    return c, h, w


def models_command(
    input_shape: Annotated[str, typer.Option("--input-shape", help="One input as CxHxW, e.g. 1x28x28.")] = "3x32x32",
    classes: Annotated[int, typer.Option("--classes", help="Number of output classes.")] = 10,
) -> None:
    """List the model architectures with parameters and multiply-accumulates per inference."""
    from rich.console import Console
    from rich.table import Table

    from divqat_tvm.models import build_model, count_macs_params, model_names

    c, h, w = parse_shape(input_shape)
    table = Table("model", "parameters", "MACs", title=f"models at {c}x{h}x{w}, {classes} classes")
    for name in model_names():
        macs, params = count_macs_params(build_model(name, c, classes, h), (c, h, w))
        table.add_row(name, f"{params:,}", f"{macs:,}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the CLI."""
    app.command("models")(models_command)
