"""Link damage is not the request's fault: an ERROR saying the request's frame stalled, failed its CRC or
looked like garbage makes DeviceLink send it again (new sequence number, at most LINK_RETRIES times), and the
answer to any attempt is taken; a real rejection still raises at once."""

from __future__ import annotations

import struct

import pytest

from divqat_tvm.device import protocol as P


class _Flaky:
    """Answers INFO requests; the first `damaged` requests get a link-damage ERROR instead."""

    def __init__(self, damaged: int, status: int = P.E_TIMEOUT, unknown_seq: bool = True) -> None:
        self.damaged, self.status, self.unknown_seq = damaged, status, unknown_seq
        self.out, self.seen = b"", []

    def write(self, data: bytes) -> None:
        ftype, seq = data[3], struct.unpack_from("<H", data, 4)[0]
        self.seen.append(seq)
        if self.damaged:
            self.damaged -= 1
            err = struct.pack("<BBHI", self.status, 0 if self.unknown_seq else ftype, 0, 0)
            self.out += P.encode_frame(P.T_ERROR, P.NO_SEQ if self.unknown_seq else seq, err)
        elif ftype == P.T_INFER:
            self.out += P.encode_frame(P.T_ERROR, seq, struct.pack("<BBHI", P.E_PAYLOAD, ftype, 0, 3))
        else:
            self.out += P.encode_frame(ftype | P.T_RESPONSE, seq, b"ok")

    def read(self, n: int, timeout: float) -> bytes:
        data, self.out = self.out[:n], self.out[n:]
        return data

    def close(self) -> None: ...

    def describe_failure(self) -> str:
        return ""


@pytest.mark.parametrize(("status", "unknown_seq"), [(P.E_TIMEOUT, True), (P.E_CRC, False), (P.E_GARBAGE, True)])
def test_damaged_request_is_resent(status, unknown_seq):
    t = _Flaky(2, status, unknown_seq)
    link = P.DeviceLink(t, timeout=2.0)
    assert link.request(P.T_INFO).payload == b"ok"
    assert link.retransmits == 2 and len(set(t.seen)) == 3 and P.NO_SEQ not in t.seen


def test_retries_are_bounded_and_rejections_raise():
    link = P.DeviceLink(_Flaky(P.LINK_RETRIES + 1), timeout=2.0)
    with pytest.raises(P.DeviceError):
        link.request(P.T_INFO)  # still damaged after LINK_RETRIES resends: the stale errors are ignored, time-out
    link = P.DeviceLink(_Flaky(0), timeout=2.0)
    with pytest.raises(P.DeviceProtocolError) as e:
        link.request(P.T_INFER, b"abc")
    assert e.value.status == P.E_PAYLOAD and link.retransmits == 0


def test_sequence_numbers_skip_the_unknown_marker():
    link = P.DeviceLink(_Flaky(0), timeout=1.0)
    link.seq = 0xFFFD
    for _ in range(3):
        link.request(P.T_INFO)
    assert link.t.seen == [0xFFFE, 0, 1]
