"""Run one attack end to end with a resumable query log, score it, and write the result JSON.

`run_attack` owns the bookkeeping every attack shares: the log in the output folder (resume = re-run
deterministically from the seed while `LoggedOracle` serves already-answered batches from disk), wall
time, queries sent now vs replayed, the student's weights and `result.json` (atomic writes).
`replay_log` trains a new student from a log alone, without any victim. Both run on a fixed number of torch
threads (`train.determinism`): the same seed gives the same log and student whatever `--threads` says.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from divqat_tvm.attacks.dfme import DFMEConfig, run_dfme
from divqat_tvm.attacks.knockoff import KnockoffConfig, run_knockoff
from divqat_tvm.attacks.losses import replay_loss
from divqat_tvm.attacks.maze import MAZEConfig, run_maze
from divqat_tvm.attacks.metrics import Evaluator
from divqat_tvm.attacks.progress import Progress, no_progress, report_step
from divqat_tvm.attacks.querylog import LoggedOracle, QueryLog, input_quant, read_header
from divqat_tvm.attacks.training import FitConfig, fit_student
from divqat_tvm.fileio import atomic_write, atomic_write_json
from divqat_tvm.train.determinism import numeric

#: attack name -> the name papers and reports use for it (the one table of attacks; order is report order)
ATTACK_NAMES = {"knockoff": "KnockoffNets", "dfme": "DFME", "maze": "MAZE"}
ATTACKS = tuple(ATTACK_NAMES)
LOG_NAME = "queries.qlog"
RESULT_NAME = "result.json"


_Cfg = TypeVar("_Cfg", KnockoffConfig, DFMEConfig, MAZEConfig)


def config_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _config_of(attack: str, cfg: object, kind: type[_Cfg]) -> _Cfg:
    """`cfg` as the config type `attack` runs with; a mismatch is a caller's bug."""
    if not isinstance(cfg, kind):
        raise TypeError(f"attack {attack!r} takes a {kind.__name__}, but got a {type(cfg).__name__}.")
    return cfg


@numeric
def run_attack(
    attack: str,
    victim,
    student: nn.Module,
    out_dir: str | Path,
    cfg: KnockoffConfig | DFMEConfig | MAZEConfig,
    seed: int = 0,
    surrogate=None,
    evaluator: Evaluator | None = None,
    progress: Progress = no_progress,
    describe: dict | None = None,
    log_inputs: bool = True,
) -> dict:
    """Run `attack` against `victim` (an Oracle, or None to finish from the log alone) into `student`.

    Args:
        attack: "knockoff", "dfme" or "maze".
        victim: the live oracle; the attack only ever sees it through `LoggedOracle`.
        student: the attacker's model, trained in place.
        out_dir: holds queries.qlog (resumed if present), student.pt and result.json.
        cfg: the attack's config.
        seed: every random choice of the attack derives from it (needed for exact resume).
        surrogate: KnockoffNets' surrogate dataset.
        evaluator: scores the student (stolen accuracy, fidelity); None skips scoring.
        progress: callback(queries, loss, accuracy, phase).
        describe: extra facts recorded in the log header and result (victim spec, student arch, ...).
        log_inputs: keep every query image in the log (needed to replay it offline); False keeps only the
            answers and a fingerprint per query, which is enough to resume (see `querylog`).

    Raises:
        QueryLogError: the folder's log belongs to another set-up; DivqatError from the victim.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    begun = read_header(out / LOG_NAME)
    if begun is not None and begun.get("log_inputs", True):
        log_inputs = True  # a log begun with the images goes on with them (e.g. one started before answers-only logs)
    # a compiled victim's log keeps the int8 bytes it receives; a resumed log keeps its own format (old: float32)
    quant = begun.get("input_quant") if begun is not None else (input_quant(victim) if log_inputs else None)
    header = {
        "format_version": 1,
        "attack": attack,
        "config": config_dict(cfg),
        "seed": seed,
        "input_shape": list(victim.input_shape) if victim is not None else None,
        "num_classes": int(victim.num_classes) if victim is not None else None,
        **(describe or {}),
        **({} if log_inputs else {"log_inputs": False}),  # absent = full, so older logs still resume
        **({"input_quant": quant} if quant else {}),
    }
    if victim is None:
        old = QueryLog.read(out / LOG_NAME)
        header["input_shape"], header["num_classes"] = old.header["input_shape"], old.header["num_classes"]
        old.close()
    log = QueryLog.open(out / LOG_NAME, header)
    oracle = LoggedOracle(victim, log)
    t0 = time.perf_counter()
    try:
        if attack == "knockoff":
            facts = run_knockoff(
                oracle, student, surrogate, _config_of(attack, cfg, KnockoffConfig), seed, evaluator, progress
            )
        elif attack == "dfme":
            facts = run_dfme(oracle, student, _config_of(attack, cfg, DFMEConfig), seed, evaluator, progress)
        elif attack == "maze":
            facts = run_maze(oracle, student, _config_of(attack, cfg, MAZEConfig), seed, evaluator, progress)
        else:
            raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, but it is {attack!r}.")
    finally:
        log.close()
    wall = time.perf_counter() - t0
    result = {
        "attack": attack,
        "config": config_dict(cfg),
        "seed": seed,
        "budget": cfg.budget,
        "queries_used": oracle.queries,
        "queries_sent_this_run": oracle.queries - oracle.replayed,
        "queries_replayed_from_log": oracle.replayed,
        "wall_time_s": round(wall, 3),
        "labels_used": "returned probability vectors (never argmax labels)",
        "log": str(out / LOG_NAME),
        "log_inputs": log_inputs,
        **(describe or {}),
        **facts,
    }
    if evaluator is not None:
        result.update(evaluator.score(student))
        result["victim_accuracy"] = evaluator.victim_accuracy
        result["fidelity_reference"] = evaluator.reference
        result["test_images"] = int(len(evaluator.y))
    atomic_write(out / "student.pt", lambda f: torch.save(student.state_dict(), f))
    atomic_write_json(out / RESULT_NAME, result)
    return result


@numeric
def replay_log(
    log_path: str | Path,
    student: nn.Module,
    fit: FitConfig,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    progress: Progress = no_progress,
    loss: str | None = None,
) -> dict:
    """Train `student` offline on every (x, p) in a log with the logged attack's student loss.

    Never queries anything. Returns a result dict (same scoring keys as `run_attack`).
    """
    log = QueryLog.read(log_path)
    x, p = log.arrays()
    attack = loss or log.header.get("attack", "knockoff")
    t0 = time.perf_counter()

    def on_epoch(epoch: int, value: float) -> None:  # the student scored after the last epoch only
        report_step(progress, len(x), value, epoch + 1, fit.epochs, "replay", fit.epochs, evaluator, student)

    final = fit_student(student, x, p, replay_loss(attack), fit, seed=seed, on_epoch=on_epoch)
    result = {
        "replay_of": str(log_path),
        "logged_attack": log.header.get("attack"),
        "loss": attack,
        "queries_in_log": int(len(x)),
        "queries_sent": 0,
        "fit": config_dict(fit),
        "final_loss": final,
        "wall_time_s": round(time.perf_counter() - t0, 3),
    }
    if evaluator is not None:
        result.update(evaluator.score(student))
        result["victim_accuracy"] = evaluator.victim_accuracy
        result["fidelity_reference"] = evaluator.reference
    return result
