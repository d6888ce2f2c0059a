"""Firmware images for every board in targets/: they build -Wall clean, with the board's memory map."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import QEMU_BOARDS, REAL_BOARDS, needs_emulator

from divqat_tvm.defenses.spec import parse_defense_spec as parse_defense
from divqat_tvm.device.build import build_firmware, fw_config_header, variant_name
from divqat_tvm.errors import CompileError, TargetError
from divqat_tvm.targets import load_board, load_core

pytestmark = [pytest.mark.emulator, needs_emulator]


def _symbols(elf) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3}


@pytest.mark.parametrize("board", QEMU_BOARDS + REAL_BOARDS)
def test_firmware_builds_clean_for_every_board(tiny_build, board):
    fb = build_firmware(tiny_build, board, "dcp:beta=0.5,gamma=0.1,nu=1000", profile=True)
    assert fb.out_dir.name == f"fw-{board}-dcp-b0.5-g0.1-n1000-prof"
    for f in (fb.elf, fb.bin, fb.hex, fb.map, fb.out_dir / "footprint.json"):
        assert f.is_file() and f.stat().st_size > 0, f
    assert fb.info["warnings"] == []
    b = load_board(board)
    sym = _symbols(fb.elf)
    assert sym["dq_vectors"] == b.flash.origin
    assert b.ram.origin <= sym["dq_stack_bottom"] < sym["dq_stack_top"] <= b.ram.origin + b.ram.length
    assert sym["dq_stack_top"] - sym["dq_stack_bottom"] == 16 * 1024
    records = fb.hex.read_text().splitlines()
    upper = int(records[0][9:13], 16) if records[0][7:9] == "04" else 0  # extended linear address, if any
    first_data = next(r for r in records if r[7:9] == "00")
    assert (upper << 16) + int(first_data[3:7], 16) == b.flash.origin
    fp = json.loads((fb.out_dir / "footprint.json").read_text())
    parts = fp["flash_by_part_bytes"]
    assert parts["weights"] == 16 * 8 + 8 * 4 + 4 * (8 + 4)  # int8 weights + int32 biases of the fixture
    assert {"kernels", "runtime", "protocol"} <= set(parts)
    assert abs(sum(parts.values()) - fp["flash_bytes"]) <= 64  # alignment padding only
    drivers = {"cmsdk": "board_cmsdk.o", "stm32-usart": "board_stm32.o", "stm32-lpuart": "board_stm32.o"}
    assert (fb.out_dir / drivers[b.uart["kind"]]).is_file()


def test_rebuild_is_skipped_when_nothing_changed(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an500")
    t = fb.elf.stat().st_mtime_ns
    assert build_firmware(tiny_build, "mps2-an500").elf.stat().st_mtime_ns == t
    assert build_firmware(tiny_build, "mps2-an500", force=True).elf.stat().st_mtime_ns != t


def test_config_header_maps_board_and_model(tiny_build):
    manifest = json.loads((tiny_build / "manifest.json").read_text())
    b = load_board("mps2-an385")
    h = fw_config_header(manifest, b, load_core(b.core), parse_defense("rs:beta=0.5"), False, False)
    assert "#define DQ_UART_BASE 0x40004000u" in h and "#define DQ_SHM_BASE 0x21000000u" in h
    assert "#define DQ_MODEL_RUN model_run" in h and "#define DQ_INPUT_DIMS {1, 1, 4, 4}" in h
    assert variant_name("x", parse_defense(None), False, True) == "fw-x-faulttest"


def test_bad_inputs_are_clear_errors(tiny_build, tmp_path):
    with pytest.raises(CompileError, match="manifest.json"):
        build_firmware(tmp_path, "mps2-an500")
    with pytest.raises(TargetError, match="unknown board"):
        build_firmware(tiny_build, "no-such-board")
