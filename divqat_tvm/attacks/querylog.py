"""Append-only, crash-safe log of every query batch and its answers.

An attack writes each batch to disk the moment the victim answers it, so an interrupted attack loses
nothing: on resume it re-runs deterministically from its seed and `LoggedOracle` serves the logged
answers instead of asking the victim again (no query is sent twice), then continues live. The same log
trains a new student offline (`divqat-tvm attack --replay LOG`).

File format (one file, `queries.qlog`):
    b"DQQLOG1\\n" then records, each: uint32 little-endian payload length, uint32 CRC-32 of the payload,
    payload. Record 0 is a UTF-8 JSON header (attack, options, seed, victim shape); every later record
    is an uncompressed .npz holding `x` (float32 [N,C,H,W]) and `p` (float32 [N,K]) — or, in a log whose
    header says `"log_inputs": false`, `f` (float32 [N, FINGERPRINT], see `fingerprint`) instead of `x`.
    Such a log resumes an attack just as well (a re-run batch is checked against its fingerprint) but
    cannot train a student offline; it is about 30x (MNIST) to 110x (CIFAR) smaller, which matters at data-free
    budgets (DFME's 20M CIFAR queries would log 245 GB of images).
    A log whose header has `"input_quant"` (the victim's input scale, zero point and layout: a compiled
    victim, tvm-host / qemu / serial) stores instead what the device receives: a compressed .npz per batch
    holding `q` (int8 [N, INPUT_SIZE], the device's layout) and `p`, at least 4x smaller than float32 images
    and still replayable (the images are the dequantized bytes, exactly what the victim answered). Logs
    without it (older ones, torch victims) keep float32 `x` and resume as before.
Each append is written then fsync'ed. A torn last record (crash mid-write) fails its length or CRC check
and is cut off on open; a bad record before the end is corruption and an error.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.errors import DivqatError

MAGIC = b"DQQLOG1\n"
_FRAME = struct.Struct("<II")
#: Sampled values per query in an answers-only log (plus the query's mean).
FINGERPRINT = 16


class QueryLogError(DivqatError):
    """A query log is corrupt, of another format, or belongs to a different attack set-up."""


def fingerprint(x: np.ndarray) -> np.ndarray:
    """[N, FINGERPRINT + 1]: FINGERPRINT evenly spaced values of each query and its mean. A deterministic
    re-run reproduces them to float rounding; a diverging one differs everywhere."""
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    idx = np.linspace(0, flat.shape[1] - 1, min(FINGERPRINT, flat.shape[1])).astype(np.int64)
    return np.concatenate([flat[:, idx], flat.mean(axis=1, keepdims=True)], axis=1)


def _encode_batch(x_or_f: np.ndarray, p: np.ndarray, inputs: bool) -> bytes:
    buf = io.BytesIO()
    probs = np.asarray(p, np.float32)
    if x_or_f.dtype == np.int8:
        np.savez_compressed(buf, q=x_or_f, p=probs)
    elif inputs:
        np.savez(buf, x=np.asarray(x_or_f, np.float32), p=probs)
    else:
        np.savez(buf, f=np.asarray(x_or_f, np.float32), p=probs)
    return buf.getvalue()


def _decode_batch(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(x, p) of a float log's record, (q, p) of an int8 one, (fingerprint, p) of an answers-only one."""
    with np.load(io.BytesIO(payload)) as z:
        key = next(k for k in ("q", "x", "f") if k in z.files)
        return z[key], z["p"]


def input_quant(victim: Any) -> dict[str, Any] | None:
    """The int8 input format a compiled victim receives (scale, zero point, layout), or None (torch)."""
    manifest = getattr(victim, "manifest", None)
    inp = manifest.get("input") if isinstance(manifest, dict) else None
    if not inp or "scale" not in inp:
        return None
    return {"scale": float(inp["scale"]), "zero_point": int(inp["zero_point"]), "layout": inp.get("layout", "NCHW")}


def quantize_queries(x: np.ndarray, quant: dict[str, Any]) -> np.ndarray:
    """float32 queries [N, C, H, W] -> the int8 bytes the device receives [N, INPUT_SIZE]."""
    from divqat_tvm.oracle.backend_tvm_host import quantize_input

    return quantize_input(np.asarray(x, np.float32), {"input": quant})


def dequantize_queries(q: np.ndarray, quant: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """The int8 bytes back to float32 images [N, *shape] in the model's input space (what the victim saw)."""
    x = (q.astype(np.float32) - np.float32(quant["zero_point"])) * np.float32(quant["scale"])
    if quant.get("layout", "NCHW") == "NHWC" and len(shape) == 3:
        c, h, w = shape
        return np.ascontiguousarray(x.reshape(len(q), h, w, c).transpose(0, 3, 1, 2))
    return x.reshape(len(q), *shape)


def _read_records(path: Path) -> tuple[list[bytes], int]:
    """All whole records and the byte offset where the valid part of the file ends."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise QueryLogError(
            f"{path} is not a divqat-tvm query log (bad magic).",
            "Point to a queries.qlog written by `divqat-tvm attack`.",
        )
    records: list[bytes] = []
    pos = len(MAGIC)
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            break  # torn tail
        payload = data[pos + _FRAME.size : end]
        if zlib.crc32(payload) != crc:
            if end == len(data):
                break  # torn tail whose length field survived
            raise QueryLogError(
                f"{path}: record {len(records)} at byte {pos} fails its CRC check.",
                "The log is corrupt; start the attack in a new --out directory.",
            )
        records.append(payload)
        pos = end
    return records, pos


def read_header(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The header of the log at `path` without reading its batches; None if there is no whole header yet."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            return None
        frame = f.read(_FRAME.size)
        if len(frame) < _FRAME.size:
            return None
        length, crc = _FRAME.unpack(frame)
        payload = f.read(length)
    return json.loads(payload.decode()) if len(payload) == length and zlib.crc32(payload) == crc else None


class QueryLog:
    """An open query log; `batches` holds what was already on disk, `append` adds more.

    Use `QueryLog.open(path, header)` to create or resume, `QueryLog.read(path)` to replay offline. A header
    with `"log_inputs": False` makes an answers-only log: `batches` then hold (fingerprint, p).
    """

    def __init__(
        self, path: Path, header: dict[str, Any], batches: list[tuple[np.ndarray, np.ndarray]], writable: bool
    ) -> None:
        self.path = path
        self.header = header
        self.batches = batches
        self.inputs = bool(header.get("log_inputs", True))
        self.quant: dict[str, Any] | None = header.get("input_quant") if self.inputs else None
        self._file = open(path, "ab") if writable else None

    @classmethod
    def open(cls, path: str | os.PathLike[str], header: dict[str, Any]) -> QueryLog:
        """Create a log with `header`, or reopen an existing one whose header equals `header`.

        Raises:
            QueryLogError: the existing log was written by a different attack set-up, or is corrupt.
        """
        path = Path(path)
        header = json.loads(json.dumps(header))  # normalise (tuples -> lists) for comparison
        if not path.exists() or path.stat().st_size == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(MAGIC)
                _write_record(f, json.dumps(header, sort_keys=True).encode())
            return cls(path, header, [], writable=True)
        log = cls._load(path, writable=True)
        if log.header != header:
            diff = sorted(k for k in set(header) | set(log.header) if header.get(k) != log.header.get(k))
            log.close()
            raise QueryLogError(
                f"{path} was written by a different attack set-up (differs in: {', '.join(diff)}).",
                "Resume with the same options, or use a new --out directory.",
            )
        return log

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> QueryLog:
        """Open a log read-only (offline replay)."""
        path = Path(path)
        if not path.is_file():
            raise QueryLogError(f"No query log at {path}.", "Pass the queries.qlog inside an attack's --out directory.")
        return cls._load(path, writable=False)

    @classmethod
    def _load(cls, path: Path, writable: bool) -> QueryLog:
        records, end = _read_records(path)
        if not records:
            raise QueryLogError(f"{path} has no header record.", "Delete it and start the attack again.")
        if writable and end < path.stat().st_size:
            with open(path, "r+b") as f:  # cut a torn tail so appends follow the last whole record
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        header = json.loads(records[0].decode())
        return cls(path, header, [_decode_batch(r) for r in records[1:]], writable)

    def append(self, x: np.ndarray, p: np.ndarray) -> None:
        """Write one answered batch durably (fsync) and keep it in memory."""
        if self._file is None:
            raise QueryLogError(f"{self.path} was opened read-only.", "Open it with QueryLog.open to append.")
        if self.quant is not None:
            kept = quantize_queries(x, self.quant)
        else:
            kept = np.asarray(x, np.float32) if self.inputs else fingerprint(x)
        p = np.asarray(p, np.float32)
        _write_record(self._file, _encode_batch(kept, p, self.inputs))
        self.batches.append((kept, p))

    @property
    def num_queries(self) -> int:
        return sum(len(p) for _, p in self.batches)

    def matches(self, index: int, x: np.ndarray, atol: float) -> bool:
        """Whether the query batch `x` is the one logged as batch `index` (by its images, int8 bytes — one
        rounding step apart at most, as a float re-run within `atol` may round the other way — or fingerprint)."""
        logged = self.batches[index][0]
        if self.quant is not None:
            probe_q = quantize_queries(x, self.quant)
            if logged.shape != probe_q.shape:
                return False
            return int(np.abs(logged.astype(np.int16) - probe_q.astype(np.int16)).max(initial=0)) <= 1
        probe = x if self.inputs else fingerprint(x)
        return logged.shape == probe.shape and bool(np.allclose(logged, probe, atol=atol, rtol=0))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every logged (x, p) pair concatenated.

        Raises:
            QueryLogError: the log is empty, or answers-only (no images to train on).
        """
        if not self.inputs:
            raise QueryLogError(
                f"{self.path} keeps only the answers and a fingerprint of each query (written with the query "
                "images left out), so it can resume its attack but not train a student offline.",
                "Re-run the attack with the images logged: `divqat-tvm attack` without --no-log-inputs, "
                "or keep_query_logs = true in an experiment config.",
            )
        if not self.batches:
            raise QueryLogError(f"{self.path} holds no queries.", "Run the attack first.")
        p = np.concatenate([b[1] for b in self.batches])
        if self.quant is not None:
            shape = tuple(self.header["input_shape"])
            return dequantize_queries(np.concatenate([b[0] for b in self.batches]), self.quant, shape), p
        return np.concatenate([b[0] for b in self.batches]), p

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.batches)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _write_record(f, payload: bytes) -> None:
    f.write(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
    f.flush()
    os.fsync(f.fileno())


class LoggedOracle:
    """The attack's view of the victim: answers from the log first, then from the live oracle.

    Exposes only what an attack may use: `query`, `queries`, `input_shape`, `num_classes`.

    Args:
        oracle: the live victim (None for a log-only replay, which fails once the log runs out).
        log: the open log; its batches are served in order while the attack re-asks them.
        atol: how far a re-generated batch may be from the logged one (generators re-run in float).
    """

    def __init__(self, oracle, log: QueryLog, atol: float = 1e-4) -> None:
        self._oracle = oracle
        self._log = log
        self._cursor = 0
        self._atol = atol
        self.input_shape = tuple(log.header.get("input_shape") or oracle.input_shape)
        self.num_classes = int(log.header.get("num_classes") or oracle.num_classes)
        self.queries = 0
        self.replayed = 0

    def query(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if self._cursor < len(self._log.batches):
            lp = self._log.batches[self._cursor][1]
            if not self._log.matches(self._cursor, x, self._atol):
                raise QueryLogError(
                    f"Query batch {self._cursor} differs from the one in {self._log.path}; the attack did not re-run identically.",
                    "Resume with the same options, seed and thread count, or use a new --out directory.",
                )
            self._cursor += 1
            self.queries += len(x)
            self.replayed += len(x)
            return lp.copy()
        if self._oracle is None:
            raise QueryLogError(
                f"The log {self._log.path} ran out after {self.queries} queries and no victim is connected.",
                "Pass --victim to continue the attack live.",
            )
        p = self._oracle.query(x)
        self._log.append(x, p)
        self._cursor += 1
        self.queries += len(x)
        return p
