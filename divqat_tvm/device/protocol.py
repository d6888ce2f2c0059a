"""Host side of the framed query protocol (twin of firmware/src/protocol.c and firmware/src/main.c).

Frame, little endian: magic D9 51 | version u8 | type u8 | seq u16 | length u32 | payload | CRC-32 u32 (zlib's,
over everything before it). A response has the request's type | 0x80 and its sequence number. `DeviceLink`
runs requests over any byte transport (QEMU's unix socket, a pty, a board's serial port).
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from divqat_tvm.errors import DeviceError

MAGIC = b"\xd9\x51"
VERSION = 1
HEADER = struct.Struct("<2sBBHI")  # magic, version, type, seq, length
CRC = struct.Struct("<I")

T_INFO, T_INFER, T_STATS, T_SHUTDOWN, T_FAULT_TEST = 0x01, 0x02, 0x03, 0x04, 0x7E
T_HELLO, T_FAULT, T_ERROR, T_RESPONSE = 0xF0, 0xFE, 0xFF, 0x80

#: status codes: the dq_status_t enum of firmware/include/dq_protocol.h (wire format; change both together)
STATUS = {
    0: "ok",
    1: "bad CRC",
    2: "bad length",
    3: "unknown command",
    4: "time-out inside a frame",
    5: "wrong protocol version",
    6: "model error",
    7: "unsupported",
    8: "bad payload",
    9: "garbage",
    10: "stack overflow",
    11: "answer too large for the device's buffer",
}
(E_CRC, E_LENGTH, E_TYPE, E_TIMEOUT, E_VERSION, E_MODEL, E_UNSUPPORTED, E_PAYLOAD, E_GARBAGE, E_STACK, E_OVERFLOW) = (
    range(1, 12)
)

#: ERROR statuses that mean the link damaged a frame (not that the request was wrong): the request is resent
LINK_DAMAGE = frozenset({1, 4, 9})  # E_CRC, E_TIMEOUT, E_GARBAGE
LINK_RETRIES = 3
#: the sequence number of an ERROR about a frame whose header never arrived whole
NO_SEQ = 0xFFFF

INFER_INLINE, INFER_SHARED = 0, 1
TIMER_UNITS = {0: "systick", 1: "dwt"}


def encode_frame(ftype: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """One complete frame with its CRC."""
    head = HEADER.pack(MAGIC, version, ftype, seq & 0xFFFF, len(payload))
    return head + payload + CRC.pack(zlib.crc32(head + payload) & 0xFFFFFFFF)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


class FrameDecoder:
    """Incremental decoder: feed bytes, take complete frames; bytes before a magic are skipped."""

    def __init__(self, max_payload: int = 1 << 24) -> None:
        self.buf = bytearray()
        self.max_payload = max_payload
        self.skipped = 0

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> Frame | None:
        """The next complete frame, or None if more bytes are needed. A bad CRC from the device is an error."""
        while True:
            i = self.buf.find(MAGIC)
            if i < 0:
                keep = 1 if self.buf[-1:] == MAGIC[:1] else 0
                self.skipped += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return None
            if i:
                self.skipped += i
                del self.buf[:i]
            if len(self.buf) < HEADER.size:
                return None
            _, version, ftype, seq, length = HEADER.unpack_from(self.buf)
            if version != VERSION or length > self.max_payload:
                self.skipped += 1
                del self.buf[:1]  # not a frame start after all: resync
                continue
            end = HEADER.size + length + CRC.size
            if len(self.buf) < end:
                return None
            body = bytes(self.buf[: HEADER.size + length])
            (crc,) = CRC.unpack_from(self.buf, HEADER.size + length)
            if crc != zlib.crc32(body) & 0xFFFFFFFF:
                self.skipped += 1
                del self.buf[:1]
                continue
            del self.buf[:end]
            return Frame(ftype, seq, body[HEADER.size :])


class Transport(Protocol):
    """A byte pipe to a device."""

    def write(self, data: bytes) -> None: ...

    def read(self, n: int, timeout: float) -> bytes:
        """Up to n bytes; b'' when nothing arrived within `timeout` seconds."""
        ...

    def close(self) -> None: ...

    def describe_failure(self) -> str:
        """What the other end can say about a failure (QEMU: exit code and stderr); '' if nothing."""
        ...


@dataclass(frozen=True)
class DeviceInfo:
    """INFO: what the firmware was built with."""

    proto_version: int
    fw_version: str
    timer: str
    defense: int
    profile: bool
    qemu: bool
    input_shape: tuple[int, ...]
    input_size: int
    output_size: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    num_ops: int
    arena_bytes: int
    clock_hz: int
    shm_base: int
    shm_size: int
    max_payload: int
    stack_bytes: int
    cpuid: int
    beta: float
    gamma: float
    nu: float
    model_sha256: str
    board: str
    model: str


_INFO_HEAD = struct.Struct("<8B4H2IfifiIIIIIIII3f")


def parse_info(payload: bytes) -> DeviceInfo:
    v = _INFO_HEAD.unpack_from(payload)
    strings = payload[_INFO_HEAD.size :].split(b"\0")
    if len(strings) < 4:
        raise DeviceError("the device's INFO answer is truncated.", "Rebuild and reflash the firmware.")
    (
        proto,
        major,
        minor,
        timer,
        defense,
        profile,
        qemu,
        ndim,
        d0,
        d1,
        d2,
        d3,
        insz,
        outsz,
        isc,
        izp,
        osc,
        ozp,
        nops,
        arena,
        clock,
        shmb,
        shms,
        maxp,
        stack,
        cpuid,
        beta,
        gamma,
        nu,
    ) = v
    return DeviceInfo(
        proto_version=proto,
        fw_version=strings[3].decode(errors="replace") or f"{major}.{minor}",
        timer=TIMER_UNITS.get(timer, str(timer)),
        defense=defense,
        profile=bool(profile),
        qemu=bool(qemu),
        input_shape=tuple((d0, d1, d2, d3)[:ndim]),
        input_size=insz,
        output_size=outsz,
        input_scale=isc,
        input_zero_point=izp,
        output_scale=osc,
        output_zero_point=ozp,
        num_ops=nops,
        arena_bytes=arena,
        clock_hz=clock,
        shm_base=shmb,
        shm_size=shms,
        max_payload=maxp,
        stack_bytes=stack,
        cpuid=cpuid,
        beta=beta,
        gamma=gamma,
        nu=nu,
        model_sha256=strings[0].decode(errors="replace"),
        board=strings[1].decode(errors="replace"),
        model=strings[2].decode(errors="replace"),
    )


@dataclass
class InferResult:
    """INFER: int8 logits, float32 probabilities (after softmax and the defence), timer ticks, stack peak."""

    status: int
    timer: str
    logits: np.ndarray
    probs: np.ndarray
    model_ticks: int
    post_ticks: int
    stack_peak: int
    rc: int


_INFER_HEAD = struct.Struct("<BBHIQQiI")


def parse_infer(payload: bytes) -> InferResult:
    status, timer, n, peak, mt, pt, rc, _ = _INFER_HEAD.unpack_from(payload)
    need = _INFER_HEAD.size + 5 * n
    if len(payload) != need:
        raise DeviceError(f"INFER answer has {len(payload)} bytes, expected {need}.", "Rebuild the firmware.")
    logits = np.frombuffer(payload, np.int8, n, _INFER_HEAD.size).copy()
    probs = np.frombuffer(payload, "<f4", n, _INFER_HEAD.size + n).astype(np.float32)
    return InferResult(status, TIMER_UNITS.get(timer, str(timer)), logits, probs, mt, pt, peak, rc)


@dataclass
class Stats:
    """STATS: per-operator timer ticks of the last inference (profiling build)."""

    timer: str
    total_ticks: int
    op_ticks: list[int] = field(default_factory=list)


_STATS_HEAD = struct.Struct("<BBHIQ")


def parse_stats(payload: bytes) -> Stats:
    timer, _, nops, _, total = _STATS_HEAD.unpack_from(payload)
    ops = list(struct.unpack_from(f"<{nops}Q", payload, _STATS_HEAD.size))
    return Stats(TIMER_UNITS.get(timer, str(timer)), total, ops)


class DeviceProtocolError(DeviceError):
    """The device answered a request with an ERROR frame."""

    def __init__(self, status: int, req_type: int, detail: int, seq: int) -> None:
        self.status, self.req_type, self.detail, self.seq = status, req_type, detail, seq
        super().__init__(
            f"the device rejected a request (type {req_type:#04x}, seq {seq}): {STATUS.get(status, status)} "
            f"(detail {detail}).",
            "Check that the host and firmware speak the same protocol version; rebuild the firmware if not.",
        )


def parse_error(frame: Frame) -> DeviceProtocolError:
    status, req_type, _, detail = struct.unpack_from("<BBHI", frame.payload.ljust(8, b"\0"))
    return DeviceProtocolError(status, req_type, detail, frame.seq)


class DeviceLink:
    """Requests and answers over a transport: sequence numbers, time-outs, banner and fault handling."""

    def __init__(self, transport: Transport, timeout: float = 30.0) -> None:
        self.t = transport
        self.timeout = timeout
        self.decoder = FrameDecoder()
        self.seq = 0
        self.hello: str | None = None
        self.retransmits = 0

    def read_frame(self, timeout: float) -> Frame | None:
        """The next frame from the device (HELLO recorded, FAULT raised), or None on time-out."""
        deadline = time.monotonic() + timeout
        while True:
            fr = self.decoder.next()
            if fr is not None:
                if fr.type == T_HELLO:
                    self.hello = fr.payload.decode(errors="replace")
                if fr.type == T_FAULT:
                    text = fr.payload.decode(errors="replace")
                    fix = (
                        "Rebuild the firmware with a larger --stack-bytes."
                        if "stack overflow" in text
                        else "The pc above names the faulting code (arm-none-eabi-addr2line -e firmware.elf PC)."
                    )
                    raise DeviceError(f"the firmware faulted: {text}. {self.t.describe_failure()}".strip(), fix)
                return fr
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.t.read(65536, min(left, 0.5))
            if data:
                self.decoder.feed(data)

    def wait_hello(self, timeout: float = 10.0) -> str:
        """Wait for the boot banner."""
        deadline = time.monotonic() + timeout
        while self.hello is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceError(
                    f"no boot banner within {timeout:g} s. {self.t.describe_failure()}".strip(),
                    "Check that the firmware was built for this board.",
                )
            self.read_frame(left)
        return self.hello

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        if self.seq == NO_SEQ:  # the device's "sequence unknown": never ours
            self.seq = 0
        return self.seq

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> Frame:
        """Send one request and return its response frame; an ERROR answer raises DeviceProtocolError.

        Damage on the link is not the request's fault: an ERROR saying the frame stalled, failed its CRC or was
        seen as garbage (about this request, or with the sequence unknown because its header never arrived
        whole) sends the request again under a new sequence number, up to `LINK_RETRIES` times; the answer to
        any of the attempts is taken (INFO, INFER and STATS change nothing on the device, so a late duplicate is
        harmless and ignored). Each retransmission is counted in `retransmits`.
        """
        frame_seqs = {self._next_seq()}
        self.t.write(encode_frame(ftype, self.seq, payload))
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            left = deadline - time.monotonic()
            fr = self.read_frame(max(left, 0.0)) if left > 0 else None
            if fr is None:
                raise DeviceError(
                    f"no answer to request type {ftype:#04x} within {timeout:g} s. {self.t.describe_failure()}".strip(),
                    "The device hung or the link is down: reset the board, or let the runner restart QEMU.",
                )
            if fr.type == T_ERROR:
                err = parse_error(fr)
                ours = fr.seq in frame_seqs
                if (
                    err.status in LINK_DAMAGE
                    and (ours or fr.seq == NO_SEQ)
                    and tries < LINK_RETRIES
                    and ftype != T_SHUTDOWN
                ):
                    tries += 1
                    self.retransmits += 1
                    frame_seqs.add(self._next_seq())
                    self.t.write(encode_frame(ftype, self.seq, payload))
                    deadline = time.monotonic() + timeout
                    continue
                if ours:
                    raise err
                continue  # a stale error about earlier garbage
            if fr.type == (ftype | T_RESPONSE) and fr.seq in frame_seqs:
                return fr

    def drain(self, quiet: float = 0.3, limit: float = 5.0) -> list[Frame]:
        """Collect frames until the link stays quiet for `quiet` seconds (after sending garbage on purpose)."""
        frames = []
        end = time.monotonic() + limit
        while time.monotonic() < end:
            fr = self.read_frame(quiet)
            if fr is None:
                break
            frames.append(fr)
        return frames

    def info(self) -> DeviceInfo:
        return parse_info(self.request(T_INFO).payload)

    def infer_inline(self, x: np.ndarray, timeout: float | None = None) -> InferResult:
        payload = bytes([INFER_INLINE, 0, 0, 0]) + np.ascontiguousarray(x, dtype=np.int8).tobytes()
        return parse_infer(self.request(T_INFER, payload, timeout).payload)

    def infer_shared(self, offset: int, timeout: float | None = None) -> InferResult:
        payload = bytes([INFER_SHARED, 0, 0, 0]) + struct.pack("<I", offset)
        return parse_infer(self.request(T_INFER, payload, timeout).payload)

    def stats(self) -> Stats:
        return parse_stats(self.request(T_STATS).payload)

    def shutdown(self, timeout: float = 5.0) -> None:
        self.request(T_SHUTDOWN, timeout=timeout)
