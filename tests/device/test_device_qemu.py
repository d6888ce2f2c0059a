"""The firmware under QEMU: bit-exact with the host twin, deterministic counts, profiling, defence cost,
protocol robustness, crashes and hangs, the serial backend through a pty."""

from __future__ import annotations

import os
import signal
import struct

import numpy as np
import pytest
from conftest import QEMU_BOARDS, needs_emulator

from divqat_tvm.device import protocol as P
from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.errors import DeviceError
from divqat_tvm.oracle.backend_device import QemuOracle, SerialOracle
from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle

pytestmark = [pytest.mark.emulator, needs_emulator]


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.2, 1.2, (n, 1, 4, 4)).astype(np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("board,n", [("mps2-an500", 240)] + [(b, 40) for b in QEMU_BOARDS if b != "mps2-an500"])
def test_firmware_bit_exact_with_host(tiny_build, board, n):
    x = _inputs(n, seed=hash(board) % 1000)
    host = TvmHostOracle(tiny_build)
    with QemuOracle(tiny_build, board=board, transfer="shared", instances=2) as dev:
        p_dev = dev.query(x)
        logits_dev = np.stack([r.logits for r in dev.last_results])
    p_host = host.query(x)
    np.testing.assert_array_equal(logits_dev, host.last_logits)
    np.testing.assert_array_equal(_bits(p_dev), _bits(p_host))
    assert dev.queries == n


def test_uart_transfer_equals_shared_ram(tiny_build):
    x = _inputs(24, seed=5)
    with (
        QemuOracle(tiny_build, transfer="uart", instances=1) as a,
        QemuOracle(tiny_build, transfer="shared", instances=1) as b,
    ):
        np.testing.assert_array_equal(_bits(a.query(x)), _bits(b.query(x)))


@pytest.mark.parametrize("spec", ["rs:beta=0.5,gamma=0.1", "dcp:beta=0.9,gamma=0.1,nu=1000"])
def test_defended_firmware_bit_exact_and_its_cost_measured(tiny_build, spec):
    x = _inputs(30, seed=7)
    host = TvmHostOracle(tiny_build, defense=spec)
    with QemuOracle(tiny_build, defense=spec, instances=1) as dev, QemuOracle(tiny_build, instances=1) as plain:
        p = dev.query(x)
        plain.query(x)
        np.testing.assert_array_equal(_bits(p), _bits(host.query(x)))
        with_d = [r.post_ticks for r in dev.last_results]
        without = [r.post_ticks for r in plain.last_results]
        # the model costs the same; the defence adds post-processing work on every answer
        assert [r.model_ticks for r in dev.last_results] == [r.model_ticks for r in plain.last_results]
        assert min(w - o for w, o in zip(with_d, without)) > 0


def test_instruction_counts_are_deterministic_and_ops_sum_to_total(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an500", profile=True)
    xs = np.random.default_rng(11).integers(-128, 128, (5, 16)).astype(np.int8)
    runs = []
    for _ in range(2):  # two boots
        with QemuRunner(fb) as r:
            assert r.info.profile and r.info.timer == "systick"
            for _ in range(3):
                for x in xs:
                    res = r.infer(x)
                    st = r.link.stats()
                    runs.append((x.tobytes(), res.model_ticks, res.post_ticks, tuple(st.op_ticks)))
                    assert st.total_ticks == res.model_ticks
                    # each operator's count is inside the total; the rest is the hooks and the call sequence
                    overhead = res.model_ticks - sum(st.op_ticks)
                    assert 0 <= overhead <= 2 + len(st.op_ticks)
                    assert all(t > 0 for t in st.op_ticks)
    by_input: dict[bytes, set] = {}
    for key, *counts in runs:
        by_input.setdefault(key, set()).add(tuple(counts))
    assert all(len(v) == 1 for v in by_input.values()), by_input


def test_non_profiling_build_refuses_stats(tiny_build):
    with QemuRunner(build_firmware(tiny_build, "mps2-an500")) as r:
        with pytest.raises(P.DeviceProtocolError) as e:
            r.link.stats()
        assert e.value.status == P.E_UNSUPPORTED


def _raw(r: QemuRunner, data: bytes) -> list[P.Frame]:
    """Send bytes as they are; collect the answers: the first may take a frame time-out (waited for up to
    20 s, so a loaded machine does not fail the test), then whatever follows until the line is quiet."""
    r.link.t.write(data)
    first = r.link.read_frame(20.0)
    return ([first] if first else []) + r.link.drain(quiet=1.0, limit=10.0)


def _statuses(frames: list[P.Frame]) -> list[int]:
    assert frames and all(f.type == P.T_ERROR for f in frames), frames
    return [P.parse_error(f).status for f in frames]


def test_protocol_robustness_errors_then_correct_answers(tiny_build):
    host = TvmHostOracle(tiny_build)
    xq = np.random.default_rng(13).integers(-128, 128, (1, 16)).astype(np.int8)
    want_logits, want_probs = host._twin.infer(xq)
    infer = P.encode_frame(P.T_INFER, 77, bytes(4) + xq.tobytes())
    rng = np.random.default_rng(0)
    with QemuRunner(build_firmware(tiny_build, "mps2-an500"), timeout=20) as r:
        cap = r.info.max_payload

        def still_correct() -> None:
            res = r.infer(xq[0], via_shared=False)
            np.testing.assert_array_equal(res.logits, want_logits[0])
            np.testing.assert_array_equal(_bits(res.probs), _bits(want_probs[0]))

        assert _statuses(_raw(r, infer[:15])) == [P.E_TIMEOUT]  # truncated
        still_correct()
        bad = bytearray(infer)
        bad[-1] ^= 0xFF
        frames = _raw(r, bytes(bad))
        assert _statuses(frames) == [P.E_CRC] and frames[0].seq == 77
        still_correct()
        head = struct.pack("<2sBBHI", P.MAGIC, 1, P.T_INFER, 5, cap + 1000)
        assert _statuses(_raw(r, head + bytes(200))) == [P.E_LENGTH]  # longer than the device takes
        still_correct()
        assert _statuses(_raw(r, P.encode_frame(P.T_INFER, 6, bytes(4) + bytes(10)))) == [P.E_PAYLOAD]  # wrong size
        assert _statuses(_raw(r, P.encode_frame(P.T_INFER, 6, bytes([1, 0, 0, 0]) + struct.pack("<I", 1 << 30)))) == [
            P.E_PAYLOAD
        ]
        assert _statuses(_raw(r, P.encode_frame(P.T_INFER, 6, bytes([9, 0, 0, 0])))) == [P.E_PAYLOAD]  # bad mode
        assert _statuses(_raw(r, P.encode_frame(0x55, 8, b"abc"))) == [P.E_TYPE]
        assert _statuses(_raw(r, P.encode_frame(P.T_FAULT_TEST, 8, b"\0"))) == [P.E_TYPE]  # not a test build
        assert _statuses(_raw(r, P.encode_frame(P.T_INFO, 9, version=2))) == [P.E_VERSION]
        still_correct()
        for k in range(3):
            statuses = _statuses(_raw(r, rng.integers(0, 256, 300 + 500 * k).astype(np.uint8).tobytes()))
            assert set(statuses) <= {P.E_GARBAGE, P.E_LENGTH, P.E_TIMEOUT, P.E_VERSION, P.E_CRC}
            still_correct()
        # a burst of garbage directly followed by a valid request still gets its answer
        frames = _raw(r, b"\x00\x13\x37" * 5)
        assert _statuses(frames) == [P.E_GARBAGE] and P.parse_error(frames[0]).detail == 15
        still_correct()
        assert r.stop() == 0


def test_fault_becomes_device_error_with_exit_code(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an500", test_fault=True)
    r = QemuRunner(fb, timeout=10)
    r.start()
    with pytest.raises(DeviceError, match="UsageFault") as e:
        r.link.request(P.T_FAULT_TEST, b"\0")
    assert "pc=0x" in str(e.value)
    assert r.wait_exit(5) == 0x46
    assert "UsageFault" in r.describe_failure()
    r.kill()


def test_hang_becomes_device_error(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an500", test_fault=True)
    r = QemuRunner(fb, timeout=10)
    r.start()
    with pytest.raises(DeviceError, match="no answer"):
        r.link.request(P.T_FAULT_TEST, b"\1", timeout=1.5)
    r.kill()
    assert r.proc.poll() is not None


def test_oracle_restarts_a_dead_emulator_and_retries(tiny_build):
    x = _inputs(4, seed=3)
    with QemuOracle(tiny_build, instances=1) as dev:
        first = dev.query(x)
        os.kill(dev._runners[0].proc.pid, signal.SIGKILL)
        again = dev.query(x)
        assert dev.restarts == 1
        np.testing.assert_array_equal(_bits(first), _bits(again))


def test_serial_backend_against_qemu_pty(tiny_build):
    fb = build_firmware(tiny_build, "mps2-an500")
    runner = QemuRunner(fb)
    pty = runner.launch_pty()
    try:
        with SerialOracle(pty, tiny_build, timeout=20) as dev:
            x = _inputs(12, seed=9)
            np.testing.assert_array_equal(_bits(dev.query(x)), _bits(TvmHostOracle(tiny_build).query(x)))
            assert dev.info.board == "mps2-an500"
    finally:
        runner.kill()


def test_serial_backend_clear_error_without_a_port(tiny_build):
    with pytest.raises(DeviceError, match="cannot open the serial port"):
        SerialOracle("/dev/does-not-exist-ttyACM9", tiny_build)


def test_stack_overflow_is_caught(tiny_build):
    """Armv8-M (an505): the stack limit register turns an overflow into a reported UsageFault (STKOF)."""
    # (the defences run in place since the firmware work on issue #13, so an inference no longer overflows a
    # 512-byte stack: the test build's fault command 2 recurses until it does)
    fb = build_firmware(tiny_build, "mps2-an505", defense="rs:beta=0.5,gamma=0.1", stack_bytes=512, test_fault=True)
    r = QemuRunner(fb, timeout=10)
    r.start()
    assert r.infer(np.zeros(16, np.int8)).status == 0  # the inference itself fits
    with pytest.raises(DeviceError, match="stack overflow") as e:
        r.link.request(P.T_FAULT_TEST, b"\2")
    assert "stack-bytes" in str(e.value)
    assert r.wait_exit(5) == 0x46
    r.kill()


@pytest.mark.parametrize("board", QEMU_BOARDS)
def test_tick_conversion_matches_an_exact_instruction_trace(tiny_build, board):
    """ticks x 1e9/clock_hz equals QEMU's own per-instruction count of the inference within one tick."""
    from divqat_tvm.device.icount import compare_counts

    row = compare_counts(build_firmware(tiny_build, board))
    assert row["exact_instructions"] > 1000
    assert abs(row["difference"]) <= row["instructions_per_tick"] + 30  # one tick + the timer reads
