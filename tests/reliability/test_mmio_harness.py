"""USART v2 boards without the board (issue #19): the ELFs built for NUCLEO-H743ZI2 (USART3), STM32F746G-DISCO
(USART1) and NUCLEO-L4R5ZI (LPUART1) -- and the NUCLEO-F446RE's USART v1 -- run in the unicorn engine with
their registers modelled (device/mmio_harness.py): the register-level code configures its USART (enable bits,
baud divisor for the board's reset clock), answers INFO and INFER bit-exactly like the host build, and answers
malformed frames with the typed errors the protocol model predicts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.device import protocol as P
from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.host_twin import HostTwin
from divqat_tvm.device.malformed import generate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
pytestmark = pytest.mark.needs_tools("arm-none-eabi-gcc")

#: board -> (UART layout, expected BRR: the reset clock over 115200 baud; LPUART: 256x)
BOARDS = {
    "nucleo-h743zi2": ("v2", 556, 0x0C),
    "stm32f746g-disco": ("v2", 139, 0x0C),
    "nucleo-l4r5zi": ("v2", 8889, 0x0C),
    "nucleo-f446re": ("v1", 139, 0x08),
}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import unicorn  # noqa: F401
    except ImportError:
        msg = "missing the unicorn engine: run scripts/setup.sh (pip install -e '.[harness]')"
        if os.environ.get("DIVQAT_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip(msg)
        pytest.fail(msg, pytrace=False)
    dst = tmp_path_factory.mktemp("harness") / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.mark.parametrize("board", list(BOARDS))
def test_real_board_elf_answers_info_and_infer_in_the_harness(build, board):
    from divqat_tvm.device.mmio_harness import UnicornBoard

    layout, brr, brr_off = BOARDS[board]
    defense = "dcp:beta=0.6,gamma=0.1,nu=1000"
    fb = build_firmware(build, board, defense)
    h = UnicornBoard(fb)
    assert h.uart.layout == layout
    link = h.link(timeout=60)
    assert link.hello.startswith("divqat-fw ") and f"board={board}" in link.hello
    info = link.info()
    assert (info.board, info.qemu, info.shm_size, info.timer) == (board, False, 0, "dwt")
    assert info.clock_hz == fb.board.clock_hz and info.cpuid >> 24 == 0x41
    assert (brr_off, brr) in h.uart.writes and h.uart.enabled()  # the register-level set-up really ran
    x = np.random.default_rng(5).integers(-128, 128, (4, info.input_size)).astype(np.int8)
    logits, probs = HostTwin(build, defense=defense).infer(x)
    for i in range(len(x)):
        r = link.infer_inline(x[i])
        assert r.status == 0
        np.testing.assert_array_equal(r.logits, logits[i])
        np.testing.assert_array_equal(r.probs.view(np.uint32), probs[i].view(np.uint32))
    with pytest.raises(P.DeviceProtocolError) as e:
        link.infer_shared(0)  # a board has no shared-RAM window
    assert e.value.status == P.E_UNSUPPORTED


@pytest.mark.parametrize("board", ["nucleo-h743zi2", "nucleo-f446re"])
def test_malformed_frames_in_the_harness(build, board):
    from divqat_tvm.device.mmio_harness import UnicornBoard

    h = UnicornBoard(build_firmware(build, board))
    link = h.link(timeout=60)
    info = link.info()
    for case in generate(np.random.default_rng(8), info, 120, truncated_every=60):
        h.write(case.data)
        for a in case.answers:
            fr = link.read_frame(60.0)
            assert fr is not None, case
            if a.status:
                e = P.parse_error(fr)
                assert (fr.type, e.status, e.seq, e.req_type) == (P.T_ERROR, a.status, a.seq, a.req_type), (case, e)
                assert a.detail is None or e.detail == a.detail
            else:
                assert (fr.type, fr.seq) == (a.req_type | P.T_RESPONSE, a.seq), case
    assert link.infer_inline(np.zeros(info.input_size, np.int8)).status == 0
