"""Run an experiment end to end: record it, run its tasks resumably, render the report.

A run directory belongs to one set of budgets: re-running with the same profile, backend and target
resumes it (and may add seeds, victims or attacks); a different profile would silently mix budgets in one
table, so it is refused.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.config import Experiment
from divqat_tvm.experiment.grid import expand
from divqat_tvm.experiment.scheduler import RunSummary, run_tasks
from divqat_tvm.fileio import atomic_write_json

PIPELINE = "divqat_tvm.experiment.tasks:run_task"
#: what must match for a run directory to be resumed
FINGERPRINT_KEYS = ("profile", "backend", "core", "board")


def check_resumable(out: Path, exp: dict[str, Any]) -> None:
    """Refuse to resume a run directory recorded with other budgets or another target.

    Raises:
        DivqatError: the recorded experiment differs in profile, backend, core or board.
    """
    path = out / "experiment.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    diff = [k for k in FINGERPRINT_KEYS if old.get(k) != exp.get(k)]
    if diff:
        raise DivqatError(
            f"{out} holds a run with a different {', '.join(diff)}; resuming it would mix budgets in one report.",
            "Pass another --out directory, or delete that one to start again.",
        )


def _fewer(exp: Experiment) -> str:
    """ " (dfme: 3)" for attacks whose cells use their own seed list."""
    own = [f"{a}: {len(exp.seeds_for(a))}" for a in exp.attacks if a in exp.attack_seeds]
    return f" ({', '.join(own)})" if own else ""


#: how the tasks run: worker processes on this machine, or Ray tasks on a cluster
EXECUTORS = ("local", "ray")


def run_experiment(
    exp: Experiment,
    out_dir: str | os.PathLike[str],
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    fn_spec: str = PIPELINE,
    console: Console | None = None,
    executor: str = "local",
    address: str | None = None,
    threads: int = 1,
    progress: bool = True,
) -> tuple[RunSummary, dict[str, Path]]:
    """Run every unfinished task of `exp` into `out_dir`, then render the report from what finished.

    Args:
        exp: a validated experiment.
        out_dir: the run directory (created; resumed if it exists).
        workers: worker processes (default: the profile's).
        cache_dir: shared artefact cache (default `<out>/cache`).
        fn_spec: the task function (tests pass a cheap one).
        console: progress output.
        executor: "local" (worker processes, stage by stage) or "ray" (a DAG of Ray tasks).
        address: the Ray cluster ("HOST:PORT" or "auto"); None starts a private one (executor "ray" only).
        threads: torch threads per task; results do not depend on it (training and attacks fix their own).
        progress: show the per-stage progress bars.

    Raises:
        DivqatError: an unknown executor, `address` without Ray, Ray not installed, or a run directory of
            another profile or target.

    Returns:
        (what ran, failed or was skipped; the report's files).
    """
    from divqat_tvm.report.render import render_report

    if executor not in EXECUTORS:
        raise DivqatError(f"Unknown executor {executor!r}.", f"Use --executor {' or '.join(EXECUTORS)}.")
    if address is not None and executor != "ray":
        raise DivqatError(
            "--address names a Ray cluster, which only --executor ray uses.", "Add --executor ray, or drop --address."
        )
    if executor == "ray":
        from divqat_tvm.experiment.ray_executor import import_ray

        import_ray()  # fail before anything is written when Ray is missing
    out = Path(out_dir)
    record = exp.to_dict()
    check_resumable(out, record)
    atomic_write_json(out / "experiment.json", record)
    console = console or Console(stderr=True)
    tasks = expand(exp)
    n_cells = sum(t.stage == "attack" for t in tasks)
    console.print(
        f"[bold]{exp.name}[/bold]: {len(exp.datasets)} dataset(s) × {len(exp.victims)} victim(s) × "
        f"{len(exp.attacks)} attack(s) × {len(exp.seeds)} seed(s){_fewer(exp)} = {n_cells} cells; profile "
        f"{exp.profile.name}; backend {exp.backend}; results in {out}"
    )
    runner: Callable[..., RunSummary] = run_tasks
    if executor == "ray":
        from divqat_tvm.experiment.ray_executor import run_tasks_ray

        runner = functools.partial(run_tasks_ray, address=address)
    summary = runner(
        tasks,
        out,
        fn_spec,
        workers=workers or exp.profile.workers,
        cache_dir=cache_dir,
        threads=threads,
        console=console,
        show_progress=progress,
    )
    paths = render_report(out)
    return summary, paths
