"""Firmware hardening (issue #13): every board and every core builds with -Wall -Wextra -Werror and
-fstack-usage, a warning is a build error, and every public symbol of firmware/ starts with dq_ (bar the
documented vector-table / linker exceptions in firmware/include/dq_vectors.h)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import FIXTURE, QEMU_BOARDS, REAL_BOARDS, needs_emulator

from divqat_tvm.defenses.spec import DefenseSpec
from divqat_tvm.device import build as B
from divqat_tvm.device.build import FIRMWARE_DIR, build_firmware, sources
from divqat_tvm.errors import CompileError
from divqat_tvm.targets import core_names, load_board, targets_dir

pytestmark = [pytest.mark.emulator, needs_emulator]

FLAGS = ("-Wall", "-Wextra", "-Werror", "-fstack-usage")
#: public names the hardware, debuggers or newlib fix (documented in firmware/include/dq_vectors.h)
NOT_DQ = {
    "Reset_Handler",
    "Default_Handler",
    "HardFault_Handler",
    "MemManage_Handler",
    "BusFault_Handler",
    "UsageFault_Handler",
    "SysTick_Handler",
    "end",
    "_end",
}


def _check_build(fb, spec: DefenseSpec) -> None:
    info = fb.info
    assert info["warnings"] == []
    assert all(f in info["cflags"] for f in FLAGS), info["cflags"]
    assert {"-Wall", "-fstack-usage"} <= set(info["model_cflags"])
    for stem in sources(fb.out_dir.parent, fb.board):
        assert (fb.out_dir / f"{stem}.o").is_file() and (fb.out_dir / f"{stem}.su").is_file(), stem
    assert (fb.out_dir / "dq_defense_config.h").read_text() == spec.c_header()


@pytest.mark.parametrize("board", QEMU_BOARDS + REAL_BOARDS)
def test_every_board_builds_with_werror_and_stack_usage(tiny_build, board):
    spec = DefenseSpec.parse("dcp:beta=0.5,gamma=0.1,nu=1000")
    _check_build(build_firmware(tiny_build, board, spec, profile=True), spec)  # the build test's image, reused


@pytest.fixture()
def core_boards(tmp_path, monkeypatch):
    """targets/ plus one made-up board per core (cortex-m0plus has no board of its own): the cores' flags on
    both UART drivers, and a QEMU-kind board so the QEMU-only code is compiled too."""
    root = tmp_path / "targets"
    shutil.copytree(targets_dir(), root)
    template = json.loads((root / "boards" / "nucleo-l4r5zi.json").read_text())
    names = []
    for core in core_names():
        for kind in ("stm32", "cmsdk", "qemu"):
            b = dict(template, name=f"test-{core}-{kind}", core=core)
            if kind != "stm32":
                b.pop("soc")
                b["uart"] = {"kind": "cmsdk", "base": "0x40004000", "baud": 115200}
            if kind == "qemu":
                b.update(kind="qemu", qemu={"machine": "none"})
            (root / "boards" / f"{b['name']}.json").write_text(json.dumps(b))
            names.append(b["name"])
    monkeypatch.setenv("DIVQAT_TARGETS", str(root))
    return names


def test_every_core_builds_with_werror(core_boards, tmp_path):
    build = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, build)
    spec = DefenseSpec.parse("rs:beta=0.5")
    assert any("cortex-m0plus" in n for n in core_boards)
    for name in core_boards:
        fb = build_firmware(build, name, spec, profile=True, test_fault=True)
        _check_build(fb, spec)
        assert fb.info["core"] == load_board(name).core


def test_a_warning_in_firmware_c_fails_the_build_and_one_in_model_c_is_reported(tmp_path, monkeypatch):
    build = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, build)
    (build / "extra.c").write_text("int dq_extra(int a) {\n    int unused;\n    return a;\n}\n")
    fb = build_firmware(build, "mps2-an385")  # generated model C: -Wall, warnings recorded, not fatal
    assert any("unused" in w for w in fb.info["warnings"]) and fb.elf.is_file()
    assert "-Werror" not in fb.info["model_cflags"]
    (build / "extra.c").unlink()
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, fw)
    with (fw / "src" / "stack.c").open("a") as f:
        f.write("\nint dq_warns(int a) {\n    int unused;\n    return a;\n}\n")
    monkeypatch.setattr(B, "FIRMWARE_DIR", fw)
    with pytest.raises(CompileError, match="unused"):
        build_firmware(build, "mps2-an385")


def test_public_symbols_are_dq_prefixed(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an505", "rs:beta=0.5", profile=True, test_fault=True)
    firmware_objs = [
        fb.out_dir / f"{stem}.o" for stem, src in sources(tiny_build, fb.board).items() if FIRMWARE_DIR in src.parents
    ]
    assert len(firmware_objs) >= 10
    out = subprocess.run(
        ["arm-none-eabi-nm", "-g", "--defined-only", *map(str, firmware_objs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p[2] for p in (line.split() for line in out.splitlines()) if len(p) == 3}
    assert "dq_main" in names and "dq_vectors" in names
    assert sorted(n for n in names if not n.startswith("dq_") and n not in NOT_DQ) == []
    # the linker script's symbols too
    elf = subprocess.run(["arm-none-eabi-nm", str(fb.elf)], capture_output=True, text=True, check=True).stdout
    ld_syms = {p[2] for p in (line.split() for line in elf.splitlines()) if len(p) == 3 and p[1] in "AaBbDdTt"}
    script = (FIRMWARE_DIR / "ld" / "cortex-m.ld.in").read_text()
    defined = {s for s in ld_syms if f"{s} = " in script}
    assert defined and all(s.startswith("dq_") or s in NOT_DQ for s in defined), defined
