"""STM32F4 (USART v1 register layout): the NUCLEO-F446RE board and the STM32F405 QEMU models as the
netduinoplus2 machine share firmware/src/board_stm32.c's F4 code; the emulated one answers through the qemu
oracle bit-exactly like the host build of the same C."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.cli import main
from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.oracle import open_oracle
from divqat_tvm.targets import load_board

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
pytestmark = [pytest.mark.emulator, pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("f4") / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


def test_targets_lists_the_stm32f4_boards(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "nucleo-f446re" in out and "netduinoplus2" in out
    assert load_board("netduinoplus2").is_qemu and load_board("netduinoplus2").raw["soc"] == "stm32f4"
    assert not load_board("nucleo-f446re").is_qemu


@pytest.mark.parametrize("board", ["nucleo-f446re", "netduinoplus2"])
def test_f4_firmware_builds_with_werror_and_usart_v1(build, board):
    fb = build_firmware(build, board, "rs:beta=0.5,gamma=0.1", profile=True)
    assert fb.info["warnings"] == [] and {"-Wall", "-Wextra", "-Werror", "-fstack-usage"} <= set(fb.info["cflags"])
    assert (fb.out_dir / "board_stm32.su").is_file()
    cfg = (fb.out_dir / "fw_config.h").read_text()
    assert "#define DQ_SOC_STM32F4 1" in cfg and "#define DQ_UART_BASE 0x40004400u" in cfg
    # the v1 layout: the driver touches SR/DR (base + 0, + 4), never the v2 ISR at + 0x1C
    dis = subprocess.run(
        ["arm-none-eabi-objdump", "-d", str(fb.out_dir / "board_stm32.o")], capture_output=True, text=True, check=True
    ).stdout
    assert "dq_uart_getc_nb" in dis and "#28]" not in dis


@pytest.mark.parametrize("defense", [None, "dcp:beta=0.6,gamma=0.1,nu=1000"])
def test_netduinoplus2_answers_bit_exact_with_the_host_build(build, defense):
    x = np.random.default_rng(3).uniform(-1.2, 1.2, (40, 1, 4, 4)).astype(np.float32)
    with (
        open_oracle(f"qemu:{build}@netduinoplus2", defense=defense) as dev,
        open_oracle(f"tvm-host:{build}", defense=defense) as host,
    ):
        p_dev, p_host = dev.query(x), host.query(x)
        assert dev.fw.board.name == "netduinoplus2"
        np.testing.assert_array_equal(np.stack([r.logits for r in dev.last_results]), host.last_logits)
    np.testing.assert_array_equal(p_dev.view(np.uint32), p_host.view(np.uint32))


def test_netduinoplus2_info_and_typed_errors(build):
    from divqat_tvm.device import protocol as P

    with QemuRunner(build_firmware(build, "netduinoplus2"), timeout=20) as r:
        assert r.info.board == "netduinoplus2" and r.info.clock_hz == 168_000_000 and r.info.shm_size == 0
        assert (r.info.cpuid >> 4) & 0xFFF == 0xC24  # Cortex-M4
        with pytest.raises(P.DeviceProtocolError) as e:
            r.link.infer_shared(0)  # no shared-RAM window on this machine
        assert e.value.status == P.E_UNSUPPORTED
        assert r.infer(np.zeros(16, np.int8)).status == 0
