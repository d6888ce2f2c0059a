"""Run a grid's tasks on a Ray cluster (`--executor ray`): every task a Ray task, scheduled as a DAG.

- Each task is submitted with its dependencies' results (ObjectRefs) as arguments, so Ray starts it as soon
  as they exist: no barrier between stages.
- Each declares its resources: `threads` CPUs, and one `emulator` (a custom resource a node offers, see
  docs/cluster.md) for a cell that runs firmware under QEMU.
- A worker runs its task in a scratch run directory on its own node and returns the record and the task's
  files (relocatable, see `experiment.cells`). Only the driver writes the run directory, atomically, in
  the same layout as the local executor: a run can go on with either executor.
- A worker that dies mid-task is retried by Ray (`max_retries`); the retry on the same node finds the
  scratch directory (e.g. an attack's query log) and resumes. A driver killed mid-grid loses nothing
  finished: re-running the same command resumes from the run directory and the cell cache.

Without `address` the executor starts a private single-node cluster bound to 127.0.0.1 and stops it at the end.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.cache import CellStore, digest, fetch_referenced, task_cache_dir
from divqat_tvm.experiment.cells import (
    OUT,
    cell_keys,
    code_version,
    collect_files,
    error_path,
    payload_from_run,
    relocate,
    write_payload,
)
from divqat_tvm.experiment.grid import Task
from divqat_tvm.experiment.scheduler import (
    FORMAT_VERSION,
    RunSummary,
    TaskContext,
    check_params,
    is_done,
    keep_cell,
    numerics_here,
    resolve,
    reuse_cell,
    stage_order,
    stage_progress,
)
from divqat_tvm.fileio import atomic_write_bytes, atomic_write_json
from divqat_tvm.oracle.pool import import_ray, ray_session

#: how often Ray re-runs a task whose worker process died
MAX_RETRIES = 3

__all__ = ["import_ray", "ray_session", "run_tasks_ray"]


def needs_emulator(t: Task) -> bool:
    """Whether a task runs firmware under QEMU (a footprint, or a victim or cell on the qemu backend)."""
    return t.stage == "footprint" or (t.stage in ("victim", "attack") and t.params.get("backend") == "qemu")


def task_options(t: Task, threads: int, max_retries: int = MAX_RETRIES) -> dict[str, Any]:
    """The Ray options of a task: its CPUs, an emulator slot for QEMU cells, retries on a dead worker."""
    opts: dict[str, Any] = {"num_cpus": threads, "max_retries": max_retries, "retry_exceptions": False, "name": t.key}
    if needs_emulator(t):
        opts["resources"] = {"emulator": 1}
    return opts


# ---------------------------------------------------------------- the worker side


@dataclass
class RemoteContext(TaskContext):
    """A TaskContext whose dependencies' results arrive with the task instead of from the run directory."""

    results: dict[str, Any] = field(default_factory=dict)

    def dep(self, stage: str, task_id: str) -> dict[str, Any]:
        key = f"{stage}/{task_id}"
        if key not in self.results:
            raise DivqatError(f"The task was not given the result of {key} it depends on.", "Re-run the experiment.")
        fetch_referenced(self.results[key], self.cache_dir)
        return self.results[key]


def scratch_dir(run_tag: str, t: Task) -> Path:
    """A worker's node-local run directory for one task (the same on a retry, so partial state survives)."""
    return Path(tempfile.gettempdir()) / f"divqat-ray-{getpass.getuser()}" / run_tag / t.stage / t.id


def run_on_worker(
    task: Task,
    fn_spec: str,
    cache: str,
    threads: int,
    code: str,
    run_tag: str,
    sys_path: list[str],
    *deps: dict[str, Any],
) -> dict[str, Any]:
    """Run one task on a Ray worker; returns its payload (status "ok", "error" or "skipped"), never raises
    for the task's own failure. `sys_path`: the driver's import path (entries that exist here are added,
    so a task function importable by the driver is importable on a worker of the same machine)."""
    import sys

    sys.path.extend(p for p in sys_path if p not in sys.path and os.path.isdir(p))
    base = {"key": task.key, "node": socket.gethostname(), "pid": os.getpid()}
    mine = code_version()
    if mine != code:
        return {
            **base,
            "status": "error",
            "error": f"the worker on {base['node']} runs other divqat-tvm sources ({mine}) than the driver ({code})",
            "traceback": "Install the same divqat-tvm revision on every node of the cluster.",
        }
    bad = [d["key"] for d in deps if d.get("status") != "ok"]
    if bad:
        return {**base, "status": "skipped", "error": f"dependency {bad[0]} did not finish"}
    scratch = scratch_dir(run_tag, task)
    out = scratch / "out"
    for d in deps:  # the files dependencies' results point at (e.g. a victim's top-1 array)
        for rel, data in d["files"].items():
            if not (out / rel).exists():
                atomic_write_bytes(out / rel, data)
    results = {d["key"]: relocate(d["record"]["result"], OUT, str(out)) for d in deps}
    work = out / "work" / task.stage / task.id
    work.mkdir(parents=True, exist_ok=True)
    ctx = RemoteContext(out, work, task_cache_dir(cache), threads, results=results)
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    try:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:
            import torch

            torch.set_num_threads(threads)
        result = resolve(fn_spec)(task, ctx)
    except Exception as e:  # recorded by the driver; the scratch directory stays for the next attempt
        return {**base, "status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    record = {
        "format_version": FORMAT_VERSION,
        "task": {"stage": task.stage, "id": task.id, "params": task.params, "deps": [list(d) for d in task.deps]},
        "result": result,
        "started_utc": started,
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - t0, 3),
        "executor": {"kind": "ray", "node": base["node"]},
        **numerics_here(),
    }
    payload = {
        **base,
        "status": "ok",
        "record": relocate(record, str(out), OUT),
        "files": collect_files(out, task, result),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return payload


# ---------------------------------------------------------------- the driver side


def run_tasks_ray(
    tasks: list[Task],
    out_dir: str | os.PathLike[str],
    fn_spec: str,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int = 1,
    console: Console | None = None,
    address: str | None = None,
    max_retries: int = MAX_RETRIES,
    show_progress: bool = True,
) -> RunSummary:
    """Run every unfinished task on Ray, as a DAG; the driver alone writes `out_dir`.

    Args:
        tasks: from `grid.expand`, dependencies before dependents.
        out_dir: the run directory (same layout as `scheduler.run_tasks`).
        fn_spec: "module:function" importable on every worker.
        workers: CPUs (and emulator slots) of a private local cluster; ignored with `address`.
        cache_dir: artefact and cell cache, a path every node sees or an fsspec URL (default `<out>/cache`).
        threads: CPUs (torch threads) per task.
        console: where progress goes.
        show_progress: show the per-stage progress bars (False: only failures and the summary).
        address: a running cluster ("HOST:PORT", "auto"); None starts a private one on 127.0.0.1.
        max_retries: re-runs of a task whose worker died.

    Returns:
        What ran, what was already finished (or in the cell cache), what failed and what was skipped.

    Raises:
        DivqatError: Ray missing, cluster unreachable, or QEMU cells on a cluster without `emulator` slots.
    """
    out = Path(out_dir).resolve()
    cache_root = str(cache_dir) if cache_dir is not None else str(out / "cache")
    if "://" not in cache_root:
        cache_root = str(Path(cache_root).resolve())  # workers may run elsewhere: no relative paths
    out.mkdir(parents=True, exist_ok=True)
    resolve(fn_spec)
    check_params(tasks, out)
    store, keys = CellStore(cache_root), cell_keys(tasks, fn_spec)
    by_key = {t.key: t for t in tasks}
    summary = RunSummary()
    todo: list[Task] = []
    for t in tasks:
        if is_done(out, t):
            summary.cached.append(t.key)
        elif reuse_cell(store, keys, out, t):
            summary.cached.append(t.key)
            summary.from_cache.append(t.key)
        else:
            todo.append(t)
    if not todo:
        return summary
    console = console or Console(stderr=True)
    code, run_tag = code_version(), digest({"out": str(out)})
    with ray_session(address, workers, workers) as ray:
        if any(needs_emulator(t) for t in todo) and ray.cluster_resources().get("emulator", 0) < 1:
            raise DivqatError(
                f"The grid has QEMU cells, but no node of the Ray cluster{' at ' + address if address else ''} offers an 'emulator' resource.",
                "Start the nodes with: ray start ... --resources='{\"emulator\": 2}' (docs/cluster.md).",
            )
        remote = ray.remote(run_on_worker)
        refs: dict[str, Any] = {}
        sys_path = [os.path.abspath(p) for p in sys.path if p]

        def ref_of(key: str) -> Any:
            if key not in refs:  # finished in an earlier run: ship its result and files from the run directory
                refs[key] = ray.put(payload_from_run(out, by_key[key]))
            return refs[key]

        waiting: dict[Any, Task] = {}
        for t in todo:
            refs[t.key] = remote.options(**task_options(t, threads, max_retries)).remote(
                t, fn_spec, cache_root, threads, code, run_tag, sys_path, *[ref_of(f"{s}/{i}") for s, i in t.deps]
            )
            waiting[refs[t.key]] = t
        gone: set[str] = set()  # failed or skipped: their dependents are skipped
        stages = stage_order(tasks)
        with stage_progress(console, show_progress) as progress:
            bars = {
                s: progress.add_task(
                    f"{s:<9}",
                    total=sum(t.stage == s for t in tasks),
                    completed=sum(t.stage == s and t not in todo for t in tasks),
                )
                for s in stages
            }
            try:
                while waiting:
                    ready, _ = ray.wait(list(waiting), num_returns=1, timeout=0.5)
                    for ref in ready:
                        t = waiting.pop(ref)
                        _land(ray, ref, t, out, store, keys, summary, gone, console)
                        progress.advance(bars[t.stage])
            except BaseException:  # Ctrl-C or a bug: stop the cluster's work; unfinished tasks run again next time
                for ref in waiting:
                    ray.cancel(ref, force=True)
                raise
    return summary


def _land(
    ray: Any,
    ref: Any,
    t: Task,
    out: Path,
    store: CellStore,
    keys: dict[str, str],
    summary: RunSummary,
    gone: set[str],
    console: Console,
) -> None:
    """Record one finished Ray task in the run directory and the summary."""
    try:
        payload = ray.get(ref)
    except Exception as e:  # the worker died more than max_retries times, or a dependency's did
        if any(f"{s}/{i}" in gone for s, i in t.deps):
            payload = {"status": "skipped"}
        else:
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            payload = {
                "status": "error",
                "error": f"the Ray task failed ({type(e).__name__}): {first[:200]}; re-run to retry",
                "traceback": str(e),
            }
    status = payload["status"]
    if status == "ok":
        write_payload(out, t, payload)
        keep_cell(store, keys, out, t, payload)
        summary.ran.append(t.key)
        return
    gone.add(t.key)
    if status == "skipped":
        summary.skipped.append(t.key)
        return
    atomic_write_json(
        error_path(out, t.stage, t.id),
        {
            "task": {"stage": t.stage, "id": t.id, "params": t.params},
            "error": payload["error"],
            "traceback": payload.get("traceback", ""),
            "node": payload.get("node"),
            "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    summary.failed[t.key] = payload["error"]
    console.print(f"[red]failed[/red] {t.key}: {payload['error']}")
