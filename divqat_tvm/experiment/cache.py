"""Content-addressed artefacts (teachers, students, exports, builds): built once, then only reused.

An artefact lives in `<cache>/<kind>/<name>-<hash>/`, the hash over its defining parameters (which include
the hashes of the artefacts it was made from). It is built in place (tools may record absolute paths) and
`artefact.json` is written last, so an artefact is complete exactly when that file exists; a build killed
half way is wiped and redone. An exclusive file lock keeps two worker processes from building the same
artefact at once (the second waits, then reuses).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from divqat_tvm.fileio import atomic_write_json


def digest(params: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable parameters (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def artefact_dir(cache: str | os.PathLike[str], kind: str, name: str, params: dict[str, Any]) -> Path:
    """Where the artefact defined by `params` lives (whether or not it exists yet)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
    return Path(cache) / kind / f"{safe}-{digest(params)}"


def ensure(cache: str | os.PathLike[str], kind: str, name: str, params: dict[str, Any],
           build: Callable[[Path], dict[str, Any] | None]) -> tuple[Path, dict[str, Any]]:
    """Return the artefact's directory and info, building it with `build(tmp_dir)` only if absent.

    Args:
        cache: the cache root.
        kind: e.g. "teacher", "model", "build".
        name: a readable prefix for the directory.
        params: everything that defines the artefact; stored beside it as `params.json`.
        build: writes the artefact's files into the directory it is given and returns a JSON-able info
            dict (stored as `artefact.json`).

    Returns:
        (final directory, info dict).
    """
    final = artefact_dir(cache, kind, name, params)
    if (final / "artefact.json").exists():
        return final, json.loads((final / "artefact.json").read_text())
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "artefact.json").exists():  # built by another process while we waited
            return final, json.loads((final / "artefact.json").read_text())
        shutil.rmtree(final, ignore_errors=True)  # left incomplete by a killed build: start again
        final.mkdir()
        info = build(final) or {}
        atomic_write_json(final / "params.json", params)
        atomic_write_json(final / "artefact.json", info)  # written last: marks the artefact complete
    return final, info
