"""Fit checks: a board's memory and the user's --flash/--ram refuse a model that cannot fit; a bare core is
compared with a typical part of it and warns."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from divqat_tvm.cli import app
from divqat_tvm.cli.compile import parse_size
from divqat_tvm.compiler.library import STACK_RESERVE, check_fits
from divqat_tvm.errors import CompileError
from divqat_tvm.targets import load_core, resolve


def test_every_core_has_a_typical_part() -> None:
    for name in ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"):
        c = load_core(name)
        assert c.typical_flash and c.typical_ram and c.typical_part, name


def test_bare_core_warns_against_its_typical_part() -> None:
    core = load_core("cortex-m0plus")
    t = resolve("cortex-m0plus")
    assert check_fits(t, 1000, 1000, named_core=True) == []
    (w,) = check_fits(t, 1000, core.typical_ram, named_core=True)
    assert f"{core.typical_ram + STACK_RESERVE:,} bytes of RAM" in w and "--flash/--ram" in w
    (w,) = check_fits(t, core.typical_flash + 1, 1000, named_core=True)
    assert "bytes of flash" in w


def test_user_limits_refuse() -> None:
    t = resolve("cortex-m7")
    assert check_fits(t, 1000, 1000, flash=4096, ram=8192, named_core=True) == []
    with pytest.raises(CompileError, match="RAM .* the --flash/--ram you gave has 8,192"):
        check_fits(t, 1000, 8192, ram=8192, named_core=True)
    with pytest.raises(CompileError, match="flash"):
        check_fits(t, 5000, 10, code_bytes=100, flash=4096)


def test_named_board_refuses() -> None:
    t = resolve("stm32f746g-disco")
    with pytest.raises(CompileError, match="stm32f746g-disco"):
        check_fits(t, t.board.flash.length + 1, 10)


@pytest.mark.parametrize(
    ("text", "value"),
    [("65536", 65536), ("512K", 524288), ("1M", 1048576), ("1.5MiB", 1572864), ("128 kb", 131072), (None, None)],
)
def test_parse_size(text: str | None, value: int | None) -> None:
    assert parse_size(text) == value


def test_bad_size_is_a_usage_error(tmp_path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    r = CliRunner().invoke(app, ["compile", str(model), "--ram", "16Q", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not a size" in r.output
