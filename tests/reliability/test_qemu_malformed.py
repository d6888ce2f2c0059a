"""Malformed frames against the emulated device (issue #19): thousands of generated near-valid and malformed
requests (device/malformed.py), interleaved with valid queries, sent to the firmware under QEMU. Every
malformed frame gets exactly the ERROR (status, sequence, request type, detail) the protocol model predicts;
every valid query is answered bit-exactly like the host twin; QEMU never crashes or hangs and exits 0 at the end."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.device import protocol as P
from divqat_tvm.device.build import build_firmware
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.device.host_twin import HostTwin
from divqat_tvm.device.malformed import KINDS, Answer, expected_answers, frame, generate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
needs_qemu = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("malformed") / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


def _check(answers: tuple[Answer, ...], frames: list[P.Frame], what: str) -> None:
    assert len(frames) == len(answers), what
    for a, fr in zip(answers, frames):
        if a.status:
            assert fr.type == P.T_ERROR, (what, fr)
            e = P.parse_error(fr)
            assert (e.status, e.seq, e.req_type) == (a.status, a.seq, a.req_type), (what, e)
            assert a.detail is None or e.detail == a.detail, (what, e.detail, a.detail)
        else:
            assert (fr.type, fr.seq) == (a.req_type | P.T_RESPONSE, a.seq), (what, fr)


def _hammer(build: Path, board: str, n_malformed: int, valid_every: int, seed: int) -> Counter:
    twin = HostTwin(build)
    rng = np.random.default_rng(seed)
    kinds: Counter = Counter()
    with QemuRunner(build_firmware(build, board), timeout=30) as r:
        link, info = r.link, r.info
        valid = 0
        for i, case in enumerate(generate(rng, info, n_malformed)):
            link.t.write(case.data)
            frames = []
            for _ in case.answers:
                fr = link.read_frame(30.0)
                assert fr is not None, f"no answer (hang?) to {case}"
                frames.append(fr)
            _check(case.answers, frames, f"case {i}: {case}")
            kinds[case.kind] += 1
            if i % valid_every == 0:  # a valid query: bit-exact with the host build of the same C
                x = rng.integers(-128, 128, (1, info.input_size)).astype(np.int8)
                want_logits, want_probs = twin.infer(x)
                if r.shared and valid % 2:
                    off = int(rng.integers(0, info.shm_size - info.input_size + 1))
                    r._mm[off : off + info.input_size] = x.tobytes()
                    res = link.infer_shared(off)
                else:
                    res = link.infer_inline(x[0])
                assert res.status == 0
                np.testing.assert_array_equal(res.logits, want_logits[0])
                np.testing.assert_array_equal(res.probs.view(np.uint32), want_probs[0].view(np.uint32))
                valid += 1
        assert link.drain(quiet=0.5) == []  # nothing unexpected left on the line
        kinds["valid"] = valid
        kinds["retransmits"] = link.retransmits  # link damage under load, recovered
        assert r.stop() == 0  # SHUTDOWN: exit code 0, not a fault
    return kinds


def test_protocol_model_matches_the_documented_errors():
    """The model itself, on hand-made cases (the firmware tests below hold the firmware to it)."""
    info = P.DeviceInfo(
        1,
        "0.1.0",
        "systick",
        0,
        False,
        True,
        (1, 1, 4, 4),
        16,
        4,
        1.0,
        0,
        1.0,
        0,
        2,
        8,
        25_000_000,
        0x60000000,
        4096,
        84,
        16384,
        0,
        0.0,
        0.0,
        0.0,
        "x",
        "b",
        "m",
    )
    ok = frame(P.T_INFO, 5)
    assert expected_answers(ok, info) == [Answer(0, 5, P.T_INFO)]
    assert expected_answers(b"\0\1\2" + ok, info) == [Answer(0, 5, P.T_INFO)]  # garbage before a frame: dropped
    assert expected_answers(b"\0\1\2", info) == [Answer(P.E_GARBAGE, P.NO_SEQ, 0, 3)]
    assert expected_answers(ok[:6], info) == [Answer(P.E_TIMEOUT, P.NO_SEQ, 0, 0)]
    assert expected_answers(frame(P.T_INFO, 5, b"x"), info) == [Answer(P.E_PAYLOAD, 5, P.T_INFO, 1)]
    off = 4096 - 15
    assert expected_answers(frame(P.T_INFER, 7, bytes([1, 0, 0, 0]) + off.to_bytes(4, "little")), info) == [
        Answer(P.E_PAYLOAD, 7, P.T_INFER, off)
    ]
    assert expected_answers(frame(P.T_INFER, 7, bytes([1, 0, 0, 0]) + (off - 1).to_bytes(4, "little")), info) == [
        Answer(0, 7, P.T_INFER)
    ]
    assert expected_answers(frame(P.T_INFO, 9, version=2) + ok, info) == [Answer(P.E_VERSION, 9, P.T_INFO, 2)]
    cases = list(generate(np.random.default_rng(0), info, 400))
    assert {c.kind for c in cases} == set(KINDS) and all(c.answers for c in cases)


@pytest.mark.slow
@pytest.mark.emulator
@needs_qemu
def test_ten_thousand_malformed_frames_under_qemu(build):
    kinds = _hammer(build, "mps2-an500", 10_000, valid_every=10, seed=19)
    assert sum(v for k, v in kinds.items() if k != "valid") == 10_000 and kinds["valid"] == 1_000
    assert kinds["truncated"] == 100 and kinds["shm_outside"] > 400


@pytest.mark.emulator
@needs_qemu
def test_malformed_frames_on_the_stm32f4_usart_v1_firmware(build):
    kinds = _hammer(build, "netduinoplus2", 600, valid_every=6, seed=4)
    assert kinds["valid"] == 100 and kinds["shm_outside"] > 20  # no window: E_UNSUPPORTED, as documented
