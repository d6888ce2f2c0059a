"""Expand an experiment into tasks, stage by stage: teachers, models, builds, victims, footprints, attack cells.

A task is the unit of resumption: it has a stable id, self-contained JSON parameters, and the ids of the
tasks whose results it reads. Stages run in order; tasks within a stage are independent and run in
parallel. Defended victims share their base model (QAT+DCP deploys the QAT model), so a model is trained
once however many defences and attacks use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from divqat_tvm.experiment.config import DatasetSpec, Experiment, VictimSpec

STAGES = ("teacher", "model", "build", "victim", "footprint", "attack")


@dataclass(frozen=True)
class Task:
    """One resumable unit of work.

    Attributes:
        stage: one of `STAGES`.
        id: file-safe, unique within its stage; its result lands in `<out>/<stage>/<id>.json`.
        params: JSON-serialisable inputs (everything the task needs besides its dependencies' results).
        deps: (stage, id) of tasks whose results this one reads.
    """

    stage: str
    id: str
    params: dict[str, Any] = field(hash=False, compare=False)
    deps: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.id}"


def teacher_id(d: DatasetSpec) -> str:
    return f"{d.victim}__{d.arch}"


def model_id(d: DatasetSpec, v: VictimSpec) -> str:
    return f"{d.victim}__{d.arch}__{v.model_key}"


def victim_id(d: DatasetSpec, v: VictimSpec) -> str:
    return f"{d.victim}__{v.key}"


def cell_id(d: DatasetSpec, v: VictimSpec, attack: str, seed: int) -> str:
    return f"{d.victim}__{v.key}__{attack}__s{seed}"


def _device(exp: Experiment, v: VictimSpec) -> bool:
    """Whether a victim answers through a compiled build (a float model has no int8 build)."""
    return exp.backend != "torch" and v.method != "float"


def expand(exp: Experiment) -> list[Task]:
    """All tasks of an experiment, in stage order, without duplicates.

    Args:
        exp: a validated experiment.

    Returns:
        Tasks ordered by `STAGES`; within a stage in config order (datasets, victims, attacks, seeds).
    """
    prof = exp.profile
    victim_seed = int(prof.defaults.get("victim_seed", 0))
    tasks: dict[str, Task] = {}

    def add(t: Task) -> None:
        tasks.setdefault(t.key, t)

    for d in exp.datasets:
        tid = teacher_id(d)
        add(Task("teacher", tid, {"dataset": d.victim, "arch": d.arch, "seed": victim_seed,
                                  "train": prof.teacher, "data_dir": exp.data_dir}))
        for v in exp.victims:
            device = _device(exp, v)
            mid = model_id(d, v)
            add(Task("model", mid, {
                "dataset": d.victim, "arch": d.arch, "method": v.method, "alpha": v.alpha, "seed": victim_seed,
                "quantize": prof.quantize, "data_dir": exp.data_dir,
            }, (("teacher", tid),)))
            needs_build = device or (exp.footprint and v.method != "float")
            if needs_build:
                add(Task("build", mid, {"core": exp.core, "board": exp.board}, (("model", mid),)))
            vid = victim_id(d, v)
            backend = exp.backend if device else "torch"
            add(Task("victim", vid, {"dataset": d.victim, "victim": v.to_dict(), "backend": backend,
                                     "board": exp.board, "data_dir": exp.data_dir},
                     (("model", mid), ("build", mid)) if device else (("model", mid),)))
            if exp.footprint and v.method != "float":
                add(Task("footprint", vid, {"victim": v.to_dict(), "board": exp.board, "core": exp.core},
                         (("build", mid),)))
            for a in exp.attacks:
                for s in exp.seeds:
                    add(Task("attack", cell_id(d, v, a, s), {
                        "dataset": d.victim, "surrogate": d.surrogate, "arch": d.arch, "victim": v.to_dict(),
                        "attack": a, "seed": s, "params": prof.attacks[a], "backend": backend, "board": exp.board,
                        "data_dir": exp.data_dir, "keep_query_log": exp.keep_query_logs,
                    }, (("victim", vid),)))
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(tasks.values(), key=lambda t: order[t.stage])  # stable: keeps config order within a stage
