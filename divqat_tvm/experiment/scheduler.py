"""Run tasks stage by stage, resumably, on worker processes, with rich progress.

Resumption is file-based and needs no journal: a task is finished exactly when `<out>/<stage>/<id>.json`
exists, written atomically after the task returned. A finished task is never run again; a task killed half
way simply runs again, and may pick up its own partial state from its work directory
(`<out>/work/<stage>/<id>/`, e.g. an attack's query log). A task that raised leaves `<id>.error.json` with
the traceback and is retried by the next run; tasks depending on it are skipped for this run.

Independent tasks run in `workers` single-threaded processes: on a 2-core machine two single-thread
processes beat one process with two threads (shared notes). `experiment.ray_executor` runs the same tasks as
a DAG of Ray tasks instead.

Finished cells are also kept by content key in the cache (`<cache>/cells/`, see `experiment.cells`): a task
whose key is there (computed by another run, or another node) is copied into the run directory, not run.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.cache import CellStore, fetch_referenced, task_cache_dir
from divqat_tvm.experiment.cells import cell_keys, error_path, payload_from_run, result_path, write_payload
from divqat_tvm.experiment.grid import STAGES, Task
from divqat_tvm.fileio import atomic_write_json

__all__ = ["RunSummary", "TaskContext", "error_path", "result_path", "run_tasks"]

FORMAT_VERSION = 1


@dataclass
class TaskContext:
    """What a task function gets besides its parameters.

    Attributes:
        out_dir: the run directory.
        work_dir: this task's own scratch directory (kept across restarts, for resumable partial state).
        cache_dir: where shared artefacts (checkpoints, builds) are cached by content.
        threads: torch threads this process may use.
        report: `report(fraction in [0, 1] or None, message)` shows progress in the parent's display.
    """

    out_dir: Path
    work_dir: Path
    cache_dir: Path
    threads: int = 1
    report: Callable[[float | None, str], None] = field(default=lambda f, m: None)

    def dep(self, stage: str, task_id: str) -> dict[str, Any]:
        """The result dict of a finished task this one depends on."""
        path = result_path(self.out_dir, stage, task_id)
        try:
            result = json.loads(path.read_text())["result"]
        except FileNotFoundError:
            raise DivqatError(
                f"The result {path} this task depends on does not exist.",
                "Re-run the experiment: the runner finishes dependencies first.",
            ) from None
        fetch_referenced(result, self.cache_dir)  # artefacts of a URL cache another node built
        return result


@dataclass
class RunSummary:
    """Counts of one run: tasks that ran now, were already finished, failed, or were skipped.

    `cached` counts every task that did not run: finished in the run directory, or found by content key in
    the cell cache (those are also listed in `from_cache`)."""

    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    from_cache: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def is_done(out_dir: Path, t: Task) -> bool:
    return result_path(out_dir, t.stage, t.id).exists()


def check_params(tasks: list[Task], out_dir: Path) -> None:
    """Refuse to reuse finished results computed with other parameters (e.g. another budget or surrogate).

    Raises:
        DivqatError: naming the first stale results and what to do.
    """
    stale = []
    for t in tasks:
        path = result_path(out_dir, t.stage, t.id)
        if path.exists():
            recorded = json.loads(path.read_text()).get("task", {}).get("params")
            if recorded != json.loads(json.dumps(t.params)):
                stale.append(t.key)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise DivqatError(
            f"{out_dir} holds results of {', '.join(stale[:3])}{more} computed with other parameters than this config's.",
            "Pass another --out directory, or delete those result files to recompute them.",
        )


def resolve(spec: str) -> Callable[[Task, TaskContext], dict[str, Any]]:
    """Import "package.module:function" (a string, so worker processes can import it too)."""
    mod, _, attr = spec.partition(":")
    if not attr:
        raise DivqatError(
            f"The task function {spec!r} is not of the form module:function.",
            "Write e.g. divqat_tvm.experiment.tasks:run_task.",
        )
    return getattr(importlib.import_module(mod), attr)


_progress_queue: Any = None


def _worker_init(q: Any, threads: int) -> None:
    """Pin each worker to `threads` threads before torch is imported, and keep the progress queue."""
    global _progress_queue
    _progress_queue = q
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def execute(task: Task, fn_spec: str, out_dir: str, cache_dir: str, threads: int) -> tuple[str, str | None]:
    """Run one task and write its result (or its error) atomically; returns (key, error or None).

    Runs in a worker process or in-process; never raises for a task's own failure.
    """
    out = Path(out_dir)
    q = _progress_queue

    def report(fraction: float | None, message: str) -> None:
        if q is not None:
            q.put((task.key, fraction, message))
        elif _local_report is not None:
            _local_report(task.key, fraction, message)

    work = out / "work" / task.stage / task.id
    work.mkdir(parents=True, exist_ok=True)
    ctx = TaskContext(out, work, Path(cache_dir), threads, report)
    started, t0 = _utc(), time.perf_counter()
    try:
        if "torch" in sys.modules:
            import torch

            torch.set_num_threads(threads)
        result = resolve(fn_spec)(task, ctx)
    except Exception as e:  # a task's failure is recorded, not fatal to the run
        tb = traceback.format_exc()
        msg = f"{type(e).__name__}: {e}"
        atomic_write_json(
            error_path(out, task.stage, task.id),
            {"task": _task_dict(task), "error": msg, "traceback": tb, "finished_utc": _utc()},
        )
        return task.key, msg
    record = {
        "format_version": FORMAT_VERSION,
        "task": _task_dict(task),
        "result": result,
        "started_utc": started,
        "finished_utc": _utc(),
        "wall_s": round(time.perf_counter() - t0, 3),
        **numerics_here(),
    }
    atomic_write_json(result_path(out, task.stage, task.id), record)
    error_path(out, task.stage, task.id).unlink(missing_ok=True)
    return task.key, None


_local_report: Callable[[str, float | None, str], None] | None = None


def stage_order(tasks: list[Task]) -> list[str]:
    """The stages the tasks use, pipeline order first (`STAGES`), then any others by name."""
    return [s for s in STAGES if any(t.stage == s for t in tasks)] + sorted({t.stage for t in tasks} - set(STAGES))


def stage_progress(console: Console, show: bool) -> Progress:
    """One bar per stage (done / total, elapsed), kept on screen when the run ends; both executors use it."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not show,
    )


def numerics_here() -> dict[str, Any]:
    """`{"numerics": ...}` for a task record: the float numerics its torch ran with (CPU vector ISA, torch
    version), which the seed alone does not fix across machines; empty when the task never loaded torch."""
    if "torch" not in sys.modules:
        return {}
    from divqat_tvm.train.determinism import float_numerics

    return {"numerics": float_numerics()}


def _task_dict(t: Task) -> dict[str, Any]:
    return {"stage": t.stage, "id": t.id, "params": t.params, "deps": [list(d) for d in t.deps]}


def run_tasks(
    tasks: list[Task],
    out_dir: str | os.PathLike[str],
    fn_spec: str,
    workers: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int = 1,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Run every unfinished task, stage by stage, `workers` at a time.

    Args:
        tasks: from `grid.expand` (or any tasks with known stages).
        out_dir: the run directory (results, errors, work directories).
        fn_spec: "module:function" called as `function(task, ctx) -> dict` for every task.
        workers: worker processes; 1 runs in this process.
        cache_dir: shared artefact cache (default `<out>/cache`).
        threads: torch threads per worker.
        console: where progress goes.
        show_progress: show the per-stage progress bars (False: only failures and the summary).

    Returns:
        What ran, what was already finished, what failed and what was skipped.
    """
    out = Path(out_dir)
    cache_root = str(cache_dir) if cache_dir is not None else str(out / "cache")
    cache = task_cache_dir(cache_root)
    out.mkdir(parents=True, exist_ok=True)
    resolve(fn_spec)  # fail early, in the parent, on a bad spec
    check_params(tasks, out)
    store, keys = CellStore(cache_root), cell_keys(tasks, fn_spec)
    summary = RunSummary()
    console = console or Console(stderr=True)
    bad: set[str] = set()
    stages = stage_order(tasks)
    with stage_progress(console, show_progress) as progress:
        for stage in stages:
            todo = [t for t in tasks if t.stage == stage]
            done = [t for t in todo if is_done(out, t)]
            summary.cached += [t.key for t in done]
            pending = []
            for t in todo:
                if is_done(out, t):
                    continue
                if any(f"{s}/{i}" in bad for s, i in t.deps):
                    summary.skipped.append(t.key)
                    bad.add(t.key)
                elif reuse_cell(store, keys, out, t):
                    summary.cached.append(t.key)
                    summary.from_cache.append(t.key)
                else:
                    pending.append(t)
            reused = sum(t.key in summary.from_cache for t in todo)
            bar = progress.add_task(f"{stage:<9}", total=len(todo), completed=len(done) + reused, start=bool(pending))
            if not pending:
                continue
            failures = _run_stage(pending, fn_spec, out, cache, workers, threads, progress, bar)
            for t in pending:
                if t.key in failures:
                    summary.failed[t.key] = failures[t.key]
                    bad.add(t.key)
                    console.print(f"[red]failed[/red] {t.key}: {failures[t.key]}")
                else:
                    summary.ran.append(t.key)
                    keep_cell(store, keys, out, t)
    return summary


def reuse_cell(store: CellStore, keys: dict[str, str], out: Path, t: Task) -> bool:
    """Copy a cell finished elsewhere (same content key) into the run directory; False if there is none."""
    hit = store.get(t.stage, t.id, keys[t.key])
    if hit is None:
        return False
    record, files = hit
    write_payload(out, t, {"record": record, "files": files})
    return True


def keep_cell(
    store: CellStore, keys: dict[str, str], out: Path, t: Task, payload: dict[str, Any] | None = None
) -> None:
    """Store a cell finished in `out` by its content key, for other runs and nodes (best effort)."""
    try:
        p = payload or payload_from_run(out, t)
        store.put(t.stage, t.id, keys[t.key], p["record"], p["files"])
    except (OSError, DivqatError) as e:  # the result is safe in the run directory; only sharing failed
        Console(stderr=True).print(f"[yellow]warning:[/yellow] could not store {t.key} in the cell cache: {e}")


def _run_stage(
    pending: list[Task], fn_spec: str, out: Path, cache: Path, workers: int, threads: int, progress: Progress, bar: Any
) -> dict[str, str]:
    """Run one stage's pending tasks; returns {task key: error} for those that failed."""
    rows: dict[str, Any] = {}
    finished: set[str] = set()

    def show(key: str, fraction: float | None, message: str) -> None:
        if key in finished:
            return
        if key not in rows:
            rows[key] = progress.add_task(f"  {key}", total=1.0)
        progress.update(
            rows[key], completed=fraction if fraction is not None else 0.0, description=f"  {key} {message}"[:110]
        )

    def finish(key: str, err: str | None) -> None:
        finished.add(key)
        if key in rows:
            progress.remove_task(rows.pop(key))
        progress.advance(bar)
        if err is not None:
            failures[key] = err

    failures: dict[str, str] = {}
    global _local_report
    if workers <= 1 or len(pending) == 1:
        _local_report = show
        try:
            for t in pending:
                show(t.key, 0.0, "")
                finish(*execute(t, fn_spec, str(out), str(cache), threads))
        finally:
            _local_report = None
        return failures

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_worker_init, initargs=(q, threads)
    ) as pool:
        futures: dict[Future, Task] = {
            pool.submit(execute, t, fn_spec, str(out), str(cache), threads): t for t in pending
        }
        try:
            while futures:
                ready, _ = wait(list(futures), timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(q, show)
                for f in ready:
                    t = futures.pop(f)
                    try:
                        finish(*f.result())
                    except BrokenProcessPool as e:
                        finish(t.key, f"the worker process died ({e}); re-run to retry")
        except BaseException:  # Ctrl-C or a bug: stop now; unfinished tasks simply run again next time
            procs = list(getattr(pool, "_processes", {}).values())  # no public handle on the workers
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            raise
        _drain(q, show)
    return failures


def _drain(q: Any, show: Callable[[str, float | None, str], None]) -> None:
    while True:
        try:
            key, fraction, message = q.get_nowait()
        except queue_mod.Empty:
            return
        show(key, fraction, message)
