"""Host side of the framed protocol: frames, CRC, resynchronisation, answer parsing."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from divqat_tvm.device import protocol as P
from divqat_tvm.errors import DeviceError


def test_frame_layout_and_crc():
    f = P.encode_frame(P.T_INFER, 0x1234, b"\x01\x02\x03")
    assert f[:2] == b"\xd9\x51" and f[2] == 1 and f[3] == P.T_INFER
    assert struct.unpack_from("<HI", f, 4) == (0x1234, 3)
    assert struct.unpack_from("<I", f, len(f) - 4)[0] == zlib.crc32(f[:-4])


def test_decoder_skips_garbage_bad_crc_and_split_input():
    good = [P.encode_frame(0x81, i, bytes([i]) * i) for i in range(1, 6)]
    bad = bytearray(P.encode_frame(0x82, 9, b"xyz"))
    bad[-2] ^= 1
    stream = b"\x00\xd9garbage\xd9" + good[0] + bytes(bad) + good[1] + b"\xd9\x51\x07" + good[2] + good[3] + good[4]
    d = P.FrameDecoder()
    got = []
    for i in range(0, len(stream), 3):  # arrives in pieces
        d.feed(stream[i : i + 3])
        while (fr := d.next()) is not None:
            got.append(fr)
    assert [(f.type, f.seq, f.payload) for f in got] == [(0x81, i, bytes([i]) * i) for i in range(1, 6)]
    assert d.skipped > 0


def test_parse_infer_and_stats():
    logits = np.array([1, -2, 3], np.int8)
    probs = np.array([0.25, 0.25, 0.5], np.float32)
    payload = struct.pack("<BBHIQQiI", 0, 0, 3, 360, 39, 9, 0, 0) + logits.tobytes() + probs.astype("<f4").tobytes()
    r = P.parse_infer(payload)
    assert (r.model_ticks, r.post_ticks, r.stack_peak, r.timer) == (39, 9, 360, "systick")
    np.testing.assert_array_equal(r.logits, logits)
    np.testing.assert_array_equal(r.probs, probs)
    with pytest.raises(DeviceError):
        P.parse_infer(payload[:-1])
    s = P.parse_stats(struct.pack("<BBHIQ", 1, 1, 2, 0, 50) + struct.pack("<2Q", 20, 25))
    assert (s.timer, s.total_ticks, s.op_ticks) == ("dwt", 50, [20, 25])


def test_error_frame_becomes_typed_exception():
    fr = P.Frame(P.T_ERROR, 7, struct.pack("<BBHI", P.E_CRC, P.T_INFER, 0, 1234))
    e = P.parse_error(fr)
    assert (e.status, e.req_type, e.detail, e.seq) == (P.E_CRC, P.T_INFER, 1234, 7)
    assert "bad CRC" in str(e)


class _Loopback:
    """A transport answering every request with a canned frame (or nothing)."""

    def __init__(self, answer):
        self.answer, self.out = answer, b""

    def write(self, data):
        seq = struct.unpack_from("<H", data, 4)[0]
        self.out += self.answer(data[3], seq)

    def read(self, n, timeout):
        data, self.out = self.out[:n], self.out[n:]
        return data

    def close(self):
        pass

    def describe_failure(self):
        return "(loopback)"


def test_link_matches_sequence_numbers_and_times_out():
    stale = P.encode_frame(P.T_ERROR, 999, struct.pack("<BBHI", P.E_GARBAGE, 0, 0, 3))
    link = P.DeviceLink(_Loopback(lambda t, s: stale + P.encode_frame(t | 0x80, s, b"ok")), timeout=1)
    assert link.request(P.T_SHUTDOWN).payload == b"ok"
    link = P.DeviceLink(_Loopback(lambda t, s: b""), timeout=0.2)
    with pytest.raises(DeviceError, match="no answer"):
        link.request(P.T_INFO)
    link = P.DeviceLink(
        _Loopback(lambda t, s: P.encode_frame(P.T_FAULT, 0xFFFF, b"UsageFault pc=0x00000100")), timeout=1
    )
    with pytest.raises(DeviceError, match="UsageFault"):
        link.request(P.T_INFO)
