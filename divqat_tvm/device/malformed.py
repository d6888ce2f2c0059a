"""Malformed and near-valid request frames, and what the firmware answers to each: a Python model of
firmware/src/protocol.c's decoder and main.c's dispatcher.

`generate(rng, info)` yields `Case`s: the bytes to send and the answers the device must give (each an ERROR of a
given status, sequence number, request type and detail, or a well-formed response), or none where the protocol
ignores the input. `expected_answers(data, info)` is the model itself: it decodes `data` as the firmware would
when all of it arrives at once and the line then goes idle. tests/reliability/test_qemu_malformed.py sends
thousands of cases to the firmware under QEMU; scripts/fuzz_firmware.py seeds the host fuzzer's corpus from them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from divqat_tvm.device.protocol import (
    E_CRC,
    E_GARBAGE,
    E_LENGTH,
    E_PAYLOAD,
    E_TIMEOUT,
    E_TYPE,
    E_UNSUPPORTED,
    E_VERSION,
    HEADER,
    INFER_INLINE,
    INFER_SHARED,
    MAGIC,
    NO_SEQ,
    T_FAULT_TEST,
    T_INFER,
    T_INFO,
    T_SHUTDOWN,
    T_STATS,
    VERSION,
    DeviceInfo,
)

INFER_HEADER = 4


@dataclass(frozen=True)
class Answer:
    """One frame the device must send: an ERROR (status != 0) or the response to request `req_type` (status 0)."""

    status: int
    seq: int
    req_type: int
    detail: int | None = None  # None: not checked (a computed CRC)


@dataclass(frozen=True)
class Case:
    kind: str
    data: bytes
    answers: tuple[Answer, ...]
    pause: bool = False  # a truncated frame: the device answers only after its frame time-out


def frame(
    ftype: int, seq: int, payload: bytes = b"", version: int = VERSION, length: int | None = None, crc_xor: int = 0
) -> bytes:
    head = HEADER.pack(MAGIC, version & 0xFF, ftype & 0xFF, seq & 0xFFFF, len(payload) if length is None else length)
    return head + payload + struct.pack("<I", (zlib.crc32(head + payload) ^ crc_xor) & 0xFFFFFFFF)


def _dispatch(ftype: int, seq: int, payload: bytes, info: DeviceInfo) -> Answer | None:
    n = len(payload)
    if ftype in (T_INFO, T_STATS, T_SHUTDOWN):
        if n:
            return Answer(E_PAYLOAD, seq, ftype, n)
        if ftype == T_STATS and not info.profile:
            return Answer(E_UNSUPPORTED, seq, ftype, 0)
        return Answer(0, seq, ftype)  # SHUTDOWN: a response, then (QEMU) the emulator exits
    if ftype != T_INFER:
        return Answer(E_TYPE, seq, ftype, ftype)
    if n < INFER_HEADER:
        return Answer(E_PAYLOAD, seq, ftype, n)
    mode = payload[0]
    if mode == INFER_INLINE:
        if n != INFER_HEADER + info.input_size:
            return Answer(E_PAYLOAD, seq, ftype, n)
        return Answer(0, seq, ftype)
    if mode == INFER_SHARED:
        if info.shm_size == 0:
            return Answer(E_UNSUPPORTED, seq, ftype, mode)
        off = struct.unpack_from("<I", payload, INFER_HEADER)[0] if n == INFER_HEADER + 4 else 0xFFFFFFFF
        if off > info.shm_size or info.shm_size - off < info.input_size:
            return Answer(E_PAYLOAD, seq, ftype, off)
        return Answer(0, seq, ftype)
    return Answer(E_PAYLOAD, seq, ftype, mode)


def expected_answers(data: bytes, info: DeviceInfo) -> list[Answer]:
    """What the firmware sends for `data` arriving in one burst followed by silence (dq_recv + dq_serve_one).
    After an error the firmware drains the line until it is idle, so nothing after the first error counts."""
    out: list[Answer] = []
    pos, n = 0, len(data)
    while pos < n:
        garbage, prev, found = 0, -1, False
        while pos < n:
            c = data[pos]
            pos += 1
            if prev == MAGIC[0] and c == MAGIC[1]:
                found = True
                break
            if prev >= 0:
                garbage += 1
            prev = c if c == MAGIC[0] else -1
            if prev < 0:
                garbage += 1
        if not found:
            garbage += 1 if prev >= 0 else 0
            if garbage:
                out.append(Answer(E_GARBAGE, NO_SEQ, 0, garbage))
            return out
        if n - pos < HEADER.size - 2:
            out.append(Answer(E_TIMEOUT, NO_SEQ, 0, 0))
            return out
        version, ftype, seq, length = struct.unpack_from("<BBHI", data, pos)
        pos += HEADER.size - 2
        if version != VERSION:
            out.append(Answer(E_VERSION, seq, ftype, version))
            return out
        if length > info.max_payload:
            out.append(Answer(E_LENGTH, seq, ftype, length))
            return out
        if n - pos < length + 4:
            out.append(Answer(E_TIMEOUT, seq, ftype, length))
            return out
        payload = data[pos : pos + length]
        (crc,) = struct.unpack_from("<I", data, pos + length)
        want = zlib.crc32(data[pos - HEADER.size : pos + length]) & 0xFFFFFFFF
        pos += length + 4
        if crc != want:
            out.append(Answer(E_CRC, seq, ftype, want))
            return out
        a = _dispatch(ftype, seq, payload, info)
        if a is not None:
            out.append(a)
    return out


def _garbage(rng: np.random.Generator, k: int) -> bytes:
    """Random bytes that never contain a frame start (no 0xD9)."""
    b = rng.integers(0, 255, k).astype(np.uint8)
    b[b >= MAGIC[0]] += 1
    return b.tobytes()


KINDS = (
    "bad_crc",
    "version",
    "too_long",
    "huge_length",
    "unknown_type",
    "response_type",
    "fault_test",
    "infer_short",
    "infer_wrong_size",
    "infer_mode",
    "shm_outside",
    "shm_wrong_size",
    "payload_on_info",
    "payload_on_stats",
    "payload_on_shutdown",
    "stats_unsupported",
    "garbage",
    "garbage_then_valid",
    "seq_wrap_info",
    "truncated",
)


def generate(rng: np.random.Generator, info: DeviceInfo, count: int, truncated_every: int = 100) -> Iterator[Case]:
    """`count` malformed (or edge-case) requests, each with the answers the device must give."""
    cap, size, shm = info.max_payload, info.input_size, info.shm_size
    kinds = [k for k in KINDS if k != "truncated"]
    for i in range(count):
        seq = int(rng.integers(0, 0x10000))
        if seq == NO_SEQ:
            seq = 0
        kind = "truncated" if truncated_every and i % truncated_every == truncated_every - 1 else kinds[i % len(kinds)]
        pause = False
        if kind == "bad_crc":
            t = int(rng.choice([T_INFO, T_INFER, T_STATS, 0x33]))
            data = frame(t, seq, rng.bytes(int(rng.integers(0, min(cap, 64)))), crc_xor=int(rng.integers(1, 1 << 32)))
        elif kind == "version":
            data = frame(T_INFO, seq, version=int(rng.choice([0, 2, 0x7F, 0xFF])))
        elif kind == "too_long":
            data = HEADER.pack(MAGIC, VERSION, T_INFER, seq, cap + 1 + int(rng.integers(0, 4))) + rng.bytes(
                int(rng.integers(0, 32))
            )
        elif kind == "huge_length":
            data = HEADER.pack(
                MAGIC, VERSION, int(rng.integers(0, 256)), seq, int(rng.choice([0xFFFFFFFF, 1 << 31, 1 << 24]))
            )
        elif kind == "unknown_type":
            t = int(rng.integers(5, 0x7E))
            data = frame(t, seq, rng.bytes(int(rng.integers(0, 16))))
        elif kind == "response_type":
            data = frame(int(rng.choice([0x81, 0x82, 0xFF, 0xF0, 0xFE, 0x00])), seq)
        elif kind == "fault_test":
            data = frame(T_FAULT_TEST, seq, b"\0")  # only test builds know it
        elif kind == "infer_short":
            data = frame(T_INFER, seq, bytes(int(rng.integers(0, INFER_HEADER))))
        elif kind == "infer_wrong_size":
            k = int(
                rng.choice(
                    [INFER_HEADER, INFER_HEADER + size - 1, INFER_HEADER + size + 1, min(cap, INFER_HEADER + size + 60)]
                )
            )
            data = frame(T_INFER, seq, bytes([INFER_INLINE, 0, 0, 0]) + rng.bytes(k - INFER_HEADER))
        elif kind == "infer_mode":
            data = frame(T_INFER, seq, bytes([int(rng.integers(2, 256)), 0, 0, 0]) + rng.bytes(size))
        elif kind == "shm_outside":
            offs = [
                shm - size + 1,
                shm,
                shm + 1,
                0xFFFFFFFF,
                0x80000000,
                0xFFFFFFFF - size + 1,
                int(rng.integers(max(shm, 1), 1 << 32)),
            ]
            off = int(rng.choice(offs)) & 0xFFFFFFFF
            data = frame(T_INFER, seq, bytes([INFER_SHARED, 0, 0, 0]) + struct.pack("<I", off))
        elif kind == "shm_wrong_size":
            data = frame(T_INFER, seq, bytes([INFER_SHARED, 0, 0, 0]) + bytes(int(rng.choice([0, 2, 3, 5, 8]))))
        elif kind.startswith("payload_on_"):
            t = {"payload_on_info": T_INFO, "payload_on_stats": T_STATS, "payload_on_shutdown": T_SHUTDOWN}[kind]
            data = frame(t, seq, rng.bytes(int(rng.integers(1, 9))))
        elif kind == "stats_unsupported":
            data = frame(T_STATS, seq)
        elif kind == "garbage":
            data = _garbage(rng, int(rng.integers(1, 40)))
        elif kind == "garbage_then_valid":
            data = _garbage(rng, int(rng.integers(1, 20))) + frame(T_INFO, seq)
        elif kind == "seq_wrap_info":
            data = frame(T_INFO, int(rng.choice([0xFFFE, 0xFFFF, 0x0000, 0x0001])))
        else:  # truncated: header and part of the payload, then silence
            full = frame(T_INFER, seq, bytes([INFER_INLINE, 0, 0, 0]) + rng.bytes(size))
            data = full[: int(rng.integers(3, len(full) - 1))]
            pause = True
        yield Case(kind, data, tuple(expected_answers(data, info)), pause)
