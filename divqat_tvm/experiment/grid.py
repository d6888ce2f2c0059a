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


def _vs(victim_seed: int) -> str:
    """The victim-seed suffix of task ids: none for seed 0, so single-seed run directories keep their ids."""
    return "" if victim_seed == 0 else f"__v{victim_seed}"


def teacher_id(d: DatasetSpec, victim_seed: int = 0) -> str:
    return f"{d.victim}__{d.arch}{_vs(victim_seed)}"


def model_id(d: DatasetSpec, v: VictimSpec, victim_seed: int = 0) -> str:
    return f"{d.victim}__{d.arch}__{v.model_key}{_vs(victim_seed)}"


def victim_id(d: DatasetSpec, v: VictimSpec, victim_seed: int = 0) -> str:
    return f"{d.victim}__{v.key}{_vs(victim_seed)}"


def cell_id(d: DatasetSpec, v: VictimSpec, attack: str, seed: int, victim_seed: int = 0) -> str:
    return f"{d.victim}__{v.key}__{attack}__s{seed}{_vs(victim_seed)}"


def _device(exp: Experiment, v: VictimSpec) -> bool:
    """Whether a victim answers through a compiled build (a float model has no int8 build)."""
    return exp.backend != "torch" and v.method != "float"


def expand(exp: Experiment) -> list[Task]:
    """All tasks of an experiment, in stage order, without duplicates.

    Every victim is trained once per victim seed (teacher and student from that seed); every attack cell runs
    once per (victim seed, attack seed). Victim tasks also read the teacher and, when the config has one, the
    undefended QAT model of the same victim seed: the reference of the perturbation and agreement figures.

    Args:
        exp: a validated experiment.

    Returns:
        Tasks ordered by `STAGES`; within a stage in config order (datasets, victim seeds, victims, attacks,
        seeds).
    """
    prof = exp.profile
    tasks: dict[str, Task] = {}
    qat = next((v for v in exp.victims if v.method == "qat" and v.defense is None), None)

    def add(t: Task) -> None:
        tasks.setdefault(t.key, t)

    def vs_param(vs: int) -> dict:
        return {} if vs == 0 else {"victim_seed": vs}

    for d in exp.datasets:
        for vs in exp.victim_seeds:
            tid = teacher_id(d, vs)
            add(
                Task(
                    "teacher",
                    tid,
                    {"dataset": d.victim, "arch": d.arch, "seed": vs, "train": prof.teacher, "data_dir": exp.data_dir},
                )
            )
            for v in exp.victims:
                device = _device(exp, v)
                mid = model_id(d, v, vs)
                add(
                    Task(
                        "model",
                        mid,
                        {
                            "dataset": d.victim,
                            "arch": d.arch,
                            "method": v.method,
                            "alpha": v.alpha,
                            "seed": vs,
                            "quantize": prof.quantize,
                            "data_dir": exp.data_dir,
                            **({"objective": v.objective} if v.objective not in (None, "paper") else {}),
                        },
                        (("teacher", tid),),
                    )
                )
                measure = exp.footprint and v.method != "float" and vs == exp.victim_seeds[0]  # same network per seed
                needs_build = device or measure
                if needs_build:
                    add(Task("build", mid, {"core": exp.core, "board": exp.board}, (("model", mid),)))
                vid = victim_id(d, v, vs)
                backend = exp.backend if device else "torch"
                deps: tuple[tuple[str, str], ...] = (("model", mid), ("build", mid)) if device else (("model", mid),)
                refs: dict = {"teacher": tid}
                deps += (("teacher", tid),)
                if qat is not None:
                    qmid = model_id(d, qat, vs)
                    refs["qat_model"] = qmid
                    deps += (("model", qmid),) + ((("build", qmid),) if _device(exp, qat) else ())
                add(
                    Task(
                        "victim",
                        vid,
                        {
                            "dataset": d.victim,
                            "victim": v.to_dict(),
                            "backend": backend,
                            "board": exp.board,
                            "data_dir": exp.data_dir,
                            "refs": refs,
                            **vs_param(vs),
                        },
                        tuple(dict.fromkeys(deps)),
                    )
                )
                if measure:
                    add(
                        Task(
                            "footprint",
                            vid,
                            {"victim": v.to_dict(), "board": exp.board, "core": exp.core},
                            (("build", mid),),
                        )
                    )
                for a in exp.attacks:
                    for s in exp.seeds_for(a):
                        add(
                            Task(
                                "attack",
                                cell_id(d, v, a, s, vs),
                                {
                                    "dataset": d.victim,
                                    "surrogate": d.surrogate,
                                    "arch": d.arch,
                                    "victim": v.to_dict(),
                                    "attack": a,
                                    "seed": s,
                                    "params": prof.attacks[a],
                                    "backend": backend,
                                    "board": exp.board,
                                    "data_dir": exp.data_dir,
                                    "keep_query_log": exp.keep_query_logs,
                                    **vs_param(vs),
                                },
                                (("victim", vid),),
                            )
                        )
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(tasks.values(), key=lambda t: order[t.stage])  # stable: keeps config order within a stage
