"""The device commands: build, emulate, flash (dry run and no board), footprint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import needs_emulator

from divqat_tvm.cli import main

pytestmark = [pytest.mark.emulator, needs_emulator]


def test_flash_dry_run_prints_the_openocd_and_pyocd_commands(tiny_build, capsys):
    assert main(["flash", str(tiny_build), "--board", "nucleo-h743zi2", "--tool", "openocd", "--dry-run"]) == 0
    out = capsys.readouterr().out
    hexfile = tiny_build / "fw-nucleo-h743zi2" / "firmware.hex"
    assert f"openocd -f board/st_nucleo_h743zi.cfg -c 'program {hexfile} verify reset exit'" in out
    assert hexfile.is_file()
    assert (
        main(["flash", str(tiny_build), "--board", "stm32f746g-disco", "--tool", "openocd", "--dry-run", "--protect"])
        == 0
    )
    out = capsys.readouterr().out
    assert "-c 'stm32f2x lock 0'" in out and "power cycle" in out
    assert main(["flash", str(tiny_build), "--board", "nucleo-l4r5zi", "--tool", "pyocd", "--dry-run"]) == 0
    assert "pyocd flash --target stm32l4r5zitx --format hex" in capsys.readouterr().out


def test_flash_without_tool_or_board_is_a_clear_error(tiny_build, capsys, monkeypatch):
    if shutil.which("openocd") or shutil.which("pyocd"):
        # a tool is installed here: then no probe is attached, and the tool's failure must become one line
        code = main(["flash", str(tiny_build), "--board", "nucleo-h743zi2"])
        assert code == 2 and "attached" in capsys.readouterr().err
    else:
        assert main(["flash", str(tiny_build), "--board", "nucleo-h743zi2"]) == 2
        assert "neither openocd nor pyocd is installed" in capsys.readouterr().err
    assert main(["flash", str(tiny_build), "--board", "mps2-an500", "--dry-run"]) == 2
    assert "QEMU machine" in capsys.readouterr().err
    assert (
        main(["flash", str(tiny_build), "--board", "nucleo-h743zi2", "--tool", "pyocd", "--protect", "--dry-run"]) == 2
    )
    assert "--tool openocd --protect" in capsys.readouterr().err


def test_build_and_emulate_commands(tiny_build, tmp_path, capsys):
    assert main(["build", str(tiny_build), "--board", "mps2-an386", "--defense", "rs:beta=0.5,gamma=0.1"]) == 0
    assert (tiny_build / "fw-mps2-an386-rs-b0.5-g0.1" / "firmware.bin").is_file()
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "emu.json"
    assert (
        main(
            [
                "emulate",
                str(tiny_build),
                "--board",
                "mps2-an500",
                "--inputs",
                str(tmp_path / "x.npy"),
                "--profile",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "instructions (emulated) per inference" in text and "dense_relu_0" in text
    d = json.loads(out.read_text())
    assert d["inferences"] == 5 and len(d["per_operator"]) == 2 and d["unit"] == "instructions (emulated)"
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 4), np.float32))
    assert main(["emulate", str(tiny_build), "--inputs", str(tmp_path / "bad.npy")]) == 2


def test_footprint_command_writes_json_markdown_png(tiny_build, tmp_path, capsys):
    assert main(["footprint", str(tiny_build), "--board", "mps2-an500", "--out", str(tmp_path)]) == 0
    fp = json.loads((tmp_path / "footprint.json").read_text())
    m = fp["measured"]
    assert m["unit"] == "instructions (emulated)" and m["resolution"] == 40
    assert m["model_per_inference"]["mean"] > 0 and m["stack_peak_bytes"] > 0
    assert [r["name"] for r in m["per_operator"]] == ["dense_relu_0", "dense_1"]
    assert 0 <= m["profiling_overhead"] <= 40 * 4
    assert fp["ram_used_bytes"]["arena"] == 8
    assert (tmp_path / "footprint.png").stat().st_size > 1000
    assert "instructions (emulated)" in (tmp_path / "footprint.md").read_text()
    # a real board without a port: static figures only, and it says why
    assert main(["footprint", str(tiny_build), "--board", "nucleo-h743zi2", "--out", str(tmp_path / "b")]) == 0
    fb = json.loads((tmp_path / "b" / "footprint.json").read_text())
    assert fb["measured"] is None and "--port" in fb["measured_note"]


def test_footprint_over_a_serial_port(tiny_build, tmp_path):
    """The board path of `footprint --port`, exercised against QEMU behind a pty."""
    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.device.emulator import QemuRunner

    runner = QemuRunner(build_firmware(tiny_build, "mps2-an500"))
    pty = runner.launch_pty()
    try:
        assert main(["footprint", str(tiny_build), "--board", "mps2-an500", "--port", pty, "--out", str(tmp_path)]) == 0
    finally:
        runner.kill()
    m = json.loads((tmp_path / "footprint.json").read_text())["measured"]
    assert m["board"] == "mps2-an500" and m["inputs"] == 3 and m["model_per_inference"]["mean"] > 0
    assert "per_operator" not in m  # not a profiling build
