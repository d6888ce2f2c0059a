#!/usr/bin/env python3
"""Rewrite a float32 query log of a compiled victim as an int8 log (what the device receives, compressed per
batch) and print both sizes: what a run with today's logging would have written for the same queries.

    .venv/bin/python scripts/querylog_int8.py OLD.qlog BUILD_DIR NEW.qlog [--out sizes.json]

Streams record by record (a 20M-query log need not fit in memory). The new log resumes the same attack:
its header is the old one plus the victim's "input_quant" (a resumed run keeps that format).
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

from divqat_tvm.attacks.querylog import (
    _FRAME,
    MAGIC,
    QueryLogError,
    _decode_batch,
    _encode_batch,
    _write_record,
    input_quant,
    quantize_queries,
)
from divqat_tvm.device.build import read_manifest
from divqat_tvm.fileio import atomic_write_json


class _Victim:
    def __init__(self, build_dir: Path) -> None:
        self.manifest = read_manifest(build_dir)


def records(path: Path):
    """The payloads of a log, one at a time (CRC-checked; a torn tail ends the stream)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise QueryLogError(f"{path} is not a divqat-tvm query log (bad magic).", "Pass a queries.qlog.")
        while frame := f.read(_FRAME.size):
            if len(frame) < _FRAME.size:
                return
            length, crc = _FRAME.unpack(frame)
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            yield payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    quant = input_quant(_Victim(a.build_dir))
    if quant is None:
        raise SystemExit(f"{a.build_dir} has no int8 input format in its manifest")
    it = records(a.old)
    header = json.loads(next(it).decode())
    if header.get("input_quant") or not header.get("log_inputs", True):
        raise SystemExit(f"{a.old} is not a float32 log with images (nothing to convert)")
    header["input_quant"] = quant
    n = 0
    tmp = a.new.with_name(a.new.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        _write_record(f, json.dumps(header, sort_keys=True).encode())
        for payload in it:
            x, p = _decode_batch(payload)
            _write_record(f, _encode_batch(quantize_queries(x, quant), p, True))
            n += len(p)
    tmp.replace(a.new)
    sizes = {"queries": n, "float32_bytes": a.old.stat().st_size, "int8_bytes": a.new.stat().st_size}
    sizes["ratio"] = sizes["float32_bytes"] / sizes["int8_bytes"]
    print(
        f"{n:,} queries: float32 log {sizes['float32_bytes'] / 1e6:,.1f} MB, int8 log {sizes['int8_bytes'] / 1e6:,.1f} MB "
        f"({sizes['ratio']:.1f}x smaller)"
    )
    if a.out is not None:
        atomic_write_json(a.out, sizes)


if __name__ == "__main__":
    main()
