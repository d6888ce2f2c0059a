"""Content-addressed artefacts (teachers, students, exports, builds): built once, then only reused.

An artefact lives in `<cache>/<kind>/<name>-<hash>/`, the hash over its defining parameters (which include
the hashes of the artefacts it was made from). It is built in place (tools may record absolute paths) and
`artefact.json` is written last, so an artefact is complete exactly when that file exists; a build killed
half way is wiped and redone. An exclusive file lock keeps two worker processes from building the same
artefact at once (the second waits, then reuses).

The cache root can also be an fsspec URL (`s3://bucket/divqat`, `file:///shared/cache`, ...), so every node
of a cluster reuses what any node built. Tasks still see a local directory: a node-local mirror of the URL
(`local_root(url)`, marked with a `.remote` file naming the URL). `ensure` looks in the mirror, then in the
URL (downloading a hit), and only then builds, uploading the result with `artefact.json` last.
`fetch_referenced` downloads the artefacts a dependency's result points at, on a node that has not seen
them yet. Cell results (the scheduler's per-task records) are stored by content in `<root>/cells/` through
`CellStore`, which reads and writes plain paths or fsspec URLs alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from divqat_tvm.errors import DivqatError
from divqat_tvm.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

#: in a node-local mirror of a URL cache: the URL it mirrors
REMOTE_MARKER = ".remote"
#: environment variable: where URL caches are mirrored on this node (default ~/.cache/divqat-tvm/mirror)
MIRROR_ENV = "DIVQAT_CACHE_MIRROR"


def digest(params: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable parameters (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def artefact_dir(cache: str | os.PathLike[str], kind: str, name: str, params: dict[str, Any]) -> Path:
    """Where the artefact defined by `params` lives (whether or not it exists yet)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
    return Path(cache) / kind / f"{safe}-{digest(params)}"


def ensure(
    cache: str | os.PathLike[str],
    kind: str,
    name: str,
    params: dict[str, Any],
    build: Callable[[Path], dict[str, Any] | None],
) -> tuple[Path, dict[str, Any]]:
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
    if is_url(cache):
        cache = local_root(str(cache))
    final = artefact_dir(cache, kind, name, params)
    if (final / "artefact.json").exists():
        return final, json.loads((final / "artefact.json").read_text())
    remote = remote_url(cache)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "artefact.json").exists():  # built by another process while we waited
            return final, json.loads((final / "artefact.json").read_text())
        shutil.rmtree(final, ignore_errors=True)  # left incomplete by a killed build: start again
        if remote is not None and _download(remote, f"{kind}/{final.name}", final):
            return final, json.loads((final / "artefact.json").read_text())
        final.mkdir()
        info = build(final) or {}
        atomic_write_json(final / "params.json", params)
        atomic_write_json(final / "artefact.json", info)  # written last: marks the artefact complete
        if remote is not None:
            _upload(final, remote, f"{kind}/{final.name}")
    return final, info


# ---------------------------------------------------------------- URL caches (fsspec)


def is_url(cache: str | os.PathLike[str]) -> bool:
    """Whether a cache root is an fsspec URL ("s3://...", "file:///...") rather than a path."""
    return "://" in str(cache)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a URL.

    Raises:
        DivqatError: fsspec (or the protocol's driver) is not installed.
    """
    try:
        import fsspec
    except ImportError:
        raise DivqatError(
            f"The cache {url} is a URL, which needs fsspec.",
            "pip install 'divqat-tvm[cluster]' (or scripts/setup.sh --cluster).",
        ) from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise DivqatError(
            f"Cannot open the cache URL {url}: {e}", "Install the fsspec driver for that protocol (e.g. s3fs)."
        ) from None


def local_root(url: str) -> Path:
    """The node-local mirror directory of a URL cache (created, with its `.remote` marker)."""
    base = Path(os.environ.get(MIRROR_ENV) or Path.home() / ".cache" / "divqat-tvm" / "mirror")
    root = base / digest({"url": url})
    root.mkdir(parents=True, exist_ok=True)
    if not (root / REMOTE_MARKER).exists():
        atomic_write_text(root / REMOTE_MARKER, url)
    return root


def task_cache_dir(cache: str | os.PathLike[str]) -> Path:
    """The directory tasks get as `ctx.cache_dir`: the path itself, or a URL's local mirror."""
    return local_root(str(cache)) if is_url(cache) else Path(cache)


def remote_url(cache: str | os.PathLike[str]) -> str | None:
    """The URL a local cache directory mirrors, or None for a plain directory."""
    marker = Path(cache) / REMOTE_MARKER
    return marker.read_text().strip() if marker.is_file() else None


def _download(url: str, rel: str, dest: Path) -> bool:
    """Copy a complete artefact `<url>/<rel>/` into `dest` (artefact.json last); False if the URL has none."""
    fs, root = filesystem(url)
    src = f"{root.rstrip('/')}/{rel}"
    if not fs.exists(f"{src}/artefact.json"):
        return False
    tmp = dest.with_name(f".{dest.name}.download")
    shutil.rmtree(tmp, ignore_errors=True)
    files = [f for f in fs.find(src) if not f.endswith("/artefact.json")] + [f"{src}/artefact.json"]
    for f in files:
        target = tmp / f[len(src) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f, str(target))
    tmp.rename(dest)
    return True


def _upload(src: Path, url: str, rel: str) -> None:
    """Copy a complete local artefact to `<url>/<rel>/`, artefact.json last (so readers never see half)."""
    fs, root = filesystem(url)
    dest = f"{root.rstrip('/')}/{rel}"
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.name != "artefact.json") + [src / "artefact.json"]
    for p in files:
        target = f"{dest}/{p.relative_to(src).as_posix()}"
        fs.makedirs(target.rpartition("/")[0], exist_ok=True)
        fs.put_file(str(p), target)


def fetch_referenced(obj: Any, cache: str | os.PathLike[str]) -> None:
    """Download every artefact of a URL cache that `obj` (a result dict) points at and this node lacks.

    A dependency's result names artefacts by their path in the mirror; on another node the mirror may not
    hold them yet. A plain cache directory is shared storage already: nothing to do.
    """
    root = task_cache_dir(cache)
    url = remote_url(root)
    if url is None:
        return
    prefix = str(root) + os.sep
    for s in strings_in(obj):
        if not s.startswith(prefix):
            continue
        parts = Path(s[len(prefix) :]).parts
        if len(parts) < 2:
            continue
        final = root / parts[0] / parts[1]
        if (final / "artefact.json").exists():
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(final.parent / f".{final.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "artefact.json").exists():
                shutil.rmtree(final, ignore_errors=True)
                _download(url, f"{parts[0]}/{parts[1]}", final)


def strings_in(obj: Any) -> Iterator[str]:
    """Every string in a JSON-like value (dicts, lists, tuples), depth first: the paths a result refers to."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from strings_in(v)


# ---------------------------------------------------------------- finished cells, by content


class CellStore:
    """Finished task records and their files, by content key: `<root>/cells/<stage>/<id>-<key>/`.

    Each entry holds `files/<relative path>` and `record.json` (written last: an entry is complete exactly
    when it exists). `root` is a directory or an fsspec URL.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.url = is_url(root)
        self.root = str(root).rstrip("/") if self.url else str(Path(root))

    def _entry(self, stage: str, task_id: str, key: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", task_id)
        return f"{self.root}/cells/{stage}/{safe}-{key}"

    def get(self, stage: str, task_id: str, key: str) -> tuple[dict[str, Any], dict[str, bytes]] | None:
        """(record, {relative path: bytes}) of a stored cell, or None."""
        entry = self._entry(stage, task_id, key)
        if self.url:
            fs, path = filesystem(entry)
            if not fs.exists(f"{path}/record.json"):
                return None
            record = json.loads(fs.cat_file(f"{path}/record.json"))
            files = {rel: fs.cat_file(f"{path}/files/{rel}") for rel in record.get("files", [])}
            return record, files
        p = Path(entry)
        if not (p / "record.json").is_file():
            return None
        record = json.loads((p / "record.json").read_text())
        return record, {rel: (p / "files" / rel).read_bytes() for rel in record.get("files", [])}

    def put(self, stage: str, task_id: str, key: str, record: dict[str, Any], files: dict[str, bytes]) -> None:
        """Store a finished cell (files first, the record last); an existing entry is left alone."""
        entry = self._entry(stage, task_id, key)
        record = {**record, "files": sorted(files)}
        blob = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode()
        if self.url:
            fs, path = filesystem(entry)
            if fs.exists(f"{path}/record.json"):
                return
            for rel, data in files.items():
                fs.makedirs(f"{path}/files/{rel}".rpartition("/")[0], exist_ok=True)
                fs.pipe_file(f"{path}/files/{rel}", data)
            fs.makedirs(path, exist_ok=True)
            fs.pipe_file(f"{path}/record.json", blob)
            return
        p = Path(entry)
        if (p / "record.json").is_file():
            return
        for rel, data in files.items():
            atomic_write_bytes(p / "files" / rel, data)
        atomic_write_bytes(p / "record.json", blob)
