"""Every write of the firmware is bounded by its destination (issue #13): the protocol code built for the host
with a stub UART (writer, streamed frames, decoder), and INFO answers under QEMU with the longest strings
a build allows, one byte more (refused by the build), and far more (the device answers DQ_E_OVERFLOW)."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE, needs_emulator

from divqat_tvm.device import build as B
from divqat_tvm.device import protocol as P
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.errors import CompileError

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "firmware" / "include"

STUB = r"""
#include <stdint.h>
#include <string.h>
#include "dq_board.h"
#include "dq_timer.h"
static uint8_t out[1u << 16];
static uint32_t out_n;
static const uint8_t *in;
static uint32_t in_n, in_i;
static uint64_t now;
void dq_uart_write(const void *b, uint32_t n) {
    for (uint32_t i = 0; i < n && out_n < sizeof out; i++) out[out_n++] = ((const uint8_t *)b)[i];
}
int dq_uart_getc_nb(void) { return in_i < in_n ? in[in_i++] : -1; }
uint64_t dq_timer_now(void) { return now += 97u; }
void t_feed(const uint8_t *p, uint32_t n) { in = p; in_n = n; in_i = 0; }
uint32_t t_take(uint8_t *dst, uint32_t cap) {
    uint32_t n = out_n < cap ? out_n : cap;
    memcpy(dst, out, n);
    out_n = 0;
    return n;
}
"""


class Writer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("cap", ctypes.c_uint32), ("len", ctypes.c_uint32)]


class Tx(ctypes.Structure):
    _fields_ = [("crc", ctypes.c_uint32), ("left", ctypes.c_uint32)]


class Frame(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint8),
        ("seq", ctypes.c_uint16),
        ("length", ctypes.c_uint32),
        ("payload", ctypes.c_void_p),
    ]


pytestmark = pytest.mark.needs_tools("gcc")


@pytest.fixture(scope="module")
def proto(tmp_path_factory):
    d = tmp_path_factory.mktemp("proto")
    (d / "fw_config.h").write_text("#define DQ_QEMU 1\n#define DQ_CLOCK_HZ 25000000u\n")
    (d / "stub.c").write_text(STUB)
    so = d / "libproto.so"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-std=gnu11",
            *B.WARNING_CFLAGS,
            f"-I{INCLUDE}",
            f"-I{d}",
            str(ROOT / "firmware" / "src" / "protocol.c"),
            str(d / "stub.c"),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(so))
    lib.dq_recv.restype = ctypes.c_int
    return lib


def _take(lib) -> list[P.Frame]:
    buf = ctypes.create_string_buffer(1 << 16)
    n = lib.t_take(buf, len(buf))
    dec = P.FrameDecoder()
    dec.feed(buf.raw[:n])
    frames = []
    while (f := dec.next()) is not None:
        frames.append(f)
    assert dec.skipped == 0 and not dec.buf  # every byte sent belongs to a well-formed frame
    return frames


def test_writer_never_passes_its_capacity(proto):
    mem = (ctypes.c_uint8 * 16)(*([0xAA] * 16))
    w = Writer()
    proto.dq_w_init(ctypes.byref(w), mem, 8)
    proto.dq_w_str0(ctypes.byref(w), b"0123456789abcdef")
    proto.dq_w_u32(ctypes.byref(w), 0x11223344)
    assert w.len == 17 + 4 and bytes(mem[:8]) == b"01234567" and bytes(mem[8:]) == b"\xaa" * 8
    proto.dq_send_reply(P.T_INFO, 5, ctypes.byref(w))
    (f,) = _take(proto)
    err = P.parse_error(f)
    assert (f.type, err.status, err.req_type, err.detail, err.seq) == (P.T_ERROR, P.E_OVERFLOW, P.T_INFO, 21, 5)
    assert "too large" in str(err)
    proto.dq_w_init(ctypes.byref(w), mem, 16)
    proto.dq_w_u32(ctypes.byref(w), 0x11223344)
    proto.dq_send_reply(P.T_INFO, 6, ctypes.byref(w))
    (f,) = _take(proto)
    assert (f.type, f.seq, f.payload) == (P.T_INFO | P.T_RESPONSE, 6, struct.pack("<I", 0x11223344))


def test_streamed_frame_sends_exactly_its_announced_length(proto):
    t = Tx()
    proto.dq_tx_begin(ctypes.byref(t), 0x83, 9, 6)
    proto.dq_tx_bytes(ctypes.byref(t), b"abcd", 4)
    proto.dq_tx_bytes(ctypes.byref(t), b"efghij", 6)  # 4 too many: clipped
    proto.dq_tx_end(ctypes.byref(t))
    proto.dq_tx_begin(ctypes.byref(t), 0x83, 10, 5)
    proto.dq_tx_bytes(ctypes.byref(t), b"xy", 2)  # short: padded with zeros
    proto.dq_tx_end(ctypes.byref(t))
    frames = _take(proto)
    assert [(f.seq, f.payload) for f in frames] == [(9, b"abcdef"), (10, b"xy\0\0\0")]


def test_decoder_never_writes_past_its_buffer(proto):
    cap = 32
    mem = (ctypes.c_uint8 * (cap + 16))(*([0x5A] * (cap + 16)))
    f, seq, typ, detail = Frame(), ctypes.c_uint16(), ctypes.c_uint8(), ctypes.c_uint32()

    def recv(data: bytes) -> int:
        keep = ctypes.create_string_buffer(data, len(data))
        proto.t_feed(keep, len(data))
        return proto.dq_recv(ctypes.byref(f), mem, cap, ctypes.byref(seq), ctypes.byref(typ), ctypes.byref(detail))

    assert recv(P.encode_frame(P.T_INFER, 3, bytes(range(cap)))) == 0
    assert bytes(mem[:cap]) == bytes(range(cap)) and f.length == cap
    for payload in (bytes(cap + 1), bytes(1000)):
        assert recv(P.encode_frame(P.T_INFER, 4, payload)) == P.E_LENGTH and detail.value == len(payload)
        assert bytes(mem[cap:]) == b"\x5a" * 16  # the canary after the buffer is intact
    head = struct.pack("<2sBBHI", P.MAGIC, 1, P.T_INFER, 4, 0xFFFFFFFF)
    assert recv(head + bytes(64)) == P.E_LENGTH and bytes(mem[cap:]) == b"\x5a" * 16
    assert recv(P.encode_frame(P.T_INFO, 5, b"", version=2)) == P.E_VERSION
    good = P.encode_frame(P.T_INFO, 6, b"ok")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert recv(bad) == P.E_CRC and detail.value == zlib.crc32(bad[:-4]) & 0xFFFFFFFF
    _take(proto)


def test_status_codes_match_the_c_enum():
    """protocol.py's table is the dq_status_t enum of dq_protocol.h, code for code."""
    text = (INCLUDE / "dq_protocol.h").read_text()
    enum = {name: int(v) for name, v in re.findall(r"^\s+DQ_(OK|E_\w+) = (\d+),", text, re.MULTILINE)}
    assert enum["OK"] == 0 and len(enum) == len(P.STATUS) == 12
    for name, code in enum.items():
        assert code in P.STATUS
        if name != "OK":
            assert getattr(P, name) == code, name


# --------------------------------------------------------------------------------------------- under QEMU
def _fixture_named(tmp_path: Path, name: str) -> Path:
    build = tmp_path / "m"
    shutil.copytree(FIXTURE, build)
    m = json.loads((build / "manifest.json").read_text())
    m["name"] = name
    (build / "manifest.json").write_text(json.dumps(m))
    return build


def _longest_name(board: str) -> str:
    cap, fixed = B.protocol_constant("DQ_INFO_MAX_BYTES"), B.protocol_constant("DQ_INFO_FIXED_BYTES")
    m = json.loads((FIXTURE / "manifest.json").read_text())
    others = [m["source_model"]["sha256"], board, B.FW_VERSION]
    return "n" * (cap - fixed - sum(len(s) + 1 for s in others) - 1)


@pytest.mark.emulator
@needs_emulator
def test_info_with_the_longest_strings_is_exactly_at_the_limit(tmp_path):
    board = "mps2-an505"
    name = _longest_name(board)
    fb = B.build_firmware(_fixture_named(tmp_path, name), board, "dcp:beta=0.25,gamma=0.3,nu=500")
    with QemuRunner(fb, timeout=20) as r:
        raw = r.link.request(P.T_INFO).payload
        assert len(raw) == B.protocol_constant("DQ_INFO_MAX_BYTES") == P._INFO_HEAD.size + 300
        assert r.info.model == name and r.info.board == board and r.info.fw_version == B.FW_VERSION
        # the defence constants the device reports are the spec's float32 values
        assert (r.info.defense, r.info.beta, r.info.gamma, r.info.nu) == (
            2,
            float(np.float32(0.25)),
            float(np.float32(0.3)),
            float(np.float32(500)),
        )
        assert r.infer(np.zeros(16, np.int8)).status == 0
    with pytest.raises(CompileError, match="limit of 384"):
        B.build_firmware(_fixture_named(tmp_path / "plus1", name + "n"), board)


@pytest.mark.emulator
@needs_emulator
def test_info_that_does_not_fit_is_a_typed_error_and_the_device_goes_on(tmp_path, monkeypatch):
    board = "mps2-an385"
    name = "x" * 1000
    monkeypatch.setattr(B, "check_limits", lambda manifest, board: None)  # what the build would refuse
    fb = B.build_firmware(_fixture_named(tmp_path, name), board)
    seen = {}
    original_info = P.DeviceLink.info

    def info_then_infer(link):  # QemuRunner.start reads INFO: here that must fail, and the device go on
        with pytest.raises(P.DeviceProtocolError) as e:
            original_info(link)
        seen["error"] = e.value
        seen["infer"] = P.parse_infer(link.request(P.T_INFER, bytes(4) + bytes(16)).payload)

    monkeypatch.setattr(P.DeviceLink, "info", info_then_infer)
    r = QemuRunner(fb, timeout=20)
    try:
        r.start()
        err = seen["error"]
        need = B.protocol_constant("DQ_INFO_FIXED_BYTES") + sum(
            len(s) + 1 for s in B.info_strings(json.loads((fb.out_dir.parent / "manifest.json").read_text()), fb.board)
        )
        assert (err.status, err.req_type, err.detail) == (P.E_OVERFLOW, P.T_INFO, need)
        assert seen["infer"].status == 0 and len(seen["infer"].probs) == 4
        assert r.proc.poll() is None  # still running: no fault
    finally:
        r.kill()
