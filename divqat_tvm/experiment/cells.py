"""A finished task as data: its record and its files, movable between a worker, the run directory and the
cell cache.

A cell's content key hashes what defines it: its stage, id and parameters, the task function, the code
version (the package's sources that compute results, plus firmware and targets) and its dependencies' keys.
So the key is known before anything runs, the same on every node, and a changed input (a budget, a seed, a
compiler source) gives a new key instead of a stale result.

Paths to the run directory inside a record are stored with the placeholder `OUT`, so a cell computed in a
worker's scratch directory, or in another run, lands in any run directory with its paths right.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from divqat_tvm.experiment.cache import digest, strings_in
from divqat_tvm.experiment.grid import Task
from divqat_tvm.fileio import atomic_write_bytes, atomic_write_json

#: stands for the run directory in a relocatable record
OUT = "@@DIVQAT_OUT@@"

#: sources that orchestrate or render but never change a result (left out of the code version)
_NOT_RESULTS = (
    "report/",
    "cli/",
    "experiment/scheduler.py",
    "experiment/ray_executor.py",
    "experiment/run.py",
    "experiment/cells.py",
    "experiment/cache.py",
    "__main__.py",
)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the sources that compute results: the package's Python (less orchestration and rendering),
    the firmware and the targets."""
    import divqat_tvm
    from divqat_tvm.resources import DATA_FOLDERS, data_dir

    h = hashlib.sha256()
    root = Path(divqat_tvm.__file__).parent
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if not rel.startswith(_NOT_RESULTS) and "__pycache__" not in rel:
            h.update(rel.encode() + b"\0" + f.read_bytes())
    for name in DATA_FOLDERS:
        base = data_dir(name)
        for f in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(f"{name}/{f.relative_to(base).as_posix()}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cell_keys(tasks: list[Task], fn_spec: str) -> dict[str, str]:
    """{task key: content key} for tasks in dependency order (a dependency outside `tasks` counts by name)."""
    keys: dict[str, str] = {}
    code = code_version()
    for t in tasks:
        deps = [keys.get(f"{s}/{i}", f"{s}/{i}") for s, i in t.deps]
        keys[t.key] = digest(
            {"stage": t.stage, "id": t.id, "params": t.params, "deps": deps, "fn": fn_spec, "code": code}
        )
    return keys


def result_path(out_dir: str | os.PathLike[str], stage: str, task_id: str) -> Path:
    """Where a finished task's record lives: `<out>/<stage>/<id>.json`."""
    return Path(out_dir) / stage / f"{task_id}.json"


def error_path(out_dir: str | os.PathLike[str], stage: str, task_id: str) -> Path:
    """Where a failed task's error lives: `<out>/<stage>/<id>.error.json`."""
    return Path(out_dir) / stage / f"{task_id}.error.json"


def relocate(obj: Any, old: str, new: str) -> Any:
    """`obj` (JSON-able) with every occurrence of the path prefix `old` replaced by `new`."""
    a, b = json.dumps(old)[1:-1], json.dumps(new)[1:-1]
    return json.loads(json.dumps(obj, default=str).replace(a, b))


def collect_files(out: Path, task: Task, result: Any) -> dict[str, bytes]:
    """A task's files in a run directory: those its result names under `out`, and its work directory."""
    out = Path(out)
    files: dict[str, bytes] = {}
    prefix = str(out) + os.sep
    for s in strings_in(result):
        if s.startswith(prefix) and Path(s).is_file():
            files[Path(s).relative_to(out).as_posix()] = Path(s).read_bytes()
    work = out / "work" / task.stage / task.id
    if work.is_dir():
        for p in sorted(work.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                files[p.relative_to(out).as_posix()] = p.read_bytes()
    return files


def payload_from_run(out: Path, task: Task) -> dict[str, Any]:
    """The relocatable payload of a task finished in run directory `out`."""
    record = json.loads(result_path(out, task.stage, task.id).read_text())
    return {
        "status": "ok",
        "key": task.key,
        "record": relocate(record, str(out), OUT),
        "files": collect_files(out, task, record.get("result")),
    }


def write_payload(out: Path, task: Task, payload: dict[str, Any]) -> None:
    """Land a finished payload in run directory `out`: its files, then its result JSON (atomically, last)."""
    for rel, data in payload["files"].items():
        atomic_write_bytes(out / rel, data)
    atomic_write_json(result_path(out, task.stage, task.id), relocate(payload["record"], OUT, str(out)))
    error_path(out, task.stage, task.id).unlink(missing_ok=True)
