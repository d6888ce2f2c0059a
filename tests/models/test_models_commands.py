"""`divqat-tvm models`: parameter and MAC counts per architecture; bad shapes are one clear error."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from divqat_tvm.cli import app
from divqat_tvm.cli.models import parse_shape
from divqat_tvm.errors import DivqatError


def test_models_command_prints_counts() -> None:
    result = CliRunner().invoke(app, ["models", "--input-shape", "3x32x32", "--classes", "10"], terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "resnet8" in x)
    assert "78,042" in line and "12,501,632" in line
    assert all(name in result.output for name in ("vgg", "dscnn", "tinycnn"))


@pytest.mark.parametrize("bad", ["1x28", "3x32x16", "ax2x2", "0x4x4"])
def test_bad_shapes(bad: str) -> None:
    with pytest.raises(DivqatError, match="3x32x32"):
        parse_shape(bad)
    assert parse_shape("1X28x28") == (1, 28, 28)
