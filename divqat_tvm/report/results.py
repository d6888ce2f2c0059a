"""Gather a run directory's per-task JSON into one summary: the report's single source of truth.

Reads `<run>/experiment.json` (the resolved config), `<run>/victim/*.json` (victim accuracy),
`<run>/attack/*.json` (one per attack cell: stolen accuracy, fidelity, queries) and `<run>/footprint/*.json`
(instructions per inference, flash, RAM), and computes means over seeds, paired DivQAT-vs-QAT differences
(Holm-corrected over the report's comparisons; victim seeds as a random effect when there are several), the
α sweep and the privacy/utility trade-off points. Nothing here formats text; `render.py` does.

The summary holds only what the results determine: wall times and dates go to `timing.json` (`timing_of`), so
the same results always give a byte-identical `report.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from divqat_tvm.errors import DivqatError
from divqat_tvm.report.stats import compare, corrected, summarize

METRICS = ("fidelity", "stolen_accuracy")

#: the stages whose tasks compute with torch floats
FLOAT_STAGES = ("teacher", "model", "victim", "attack")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DivqatError(
            f"The result file {path} is not valid JSON ({e}).",
            "Delete it and re-run the experiment to recompute that task.",
        ) from None


def load_records(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    """Every finished task record of a stage (skipping `.error.json`)."""
    d = Path(run_dir) / stage
    return [_read(p) for p in sorted(d.glob("*.json")) if not p.name.endswith(".error.json")] if d.is_dir() else []


def summarize_run(run_dir: str | Path, confidence: float = 0.95) -> dict[str, Any]:
    """The report's data: per dataset, the victims table, paired comparisons, α sweep and footprints.

    Raises:
        DivqatError: the directory holds no experiment.
    """
    run = Path(run_dir)
    exp_path = run / "experiment.json"
    if not exp_path.exists():
        raise DivqatError(
            f"{run} holds no experiment.json, so it is not an experiment run directory.",
            "Pass the --out directory of `divqat-tvm experiment` or `divqat-tvm demo`.",
        )
    exp = _read(exp_path)
    victims: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    records = {stage: load_records(run, stage) for stage in FLOAT_STAGES}
    for r in records["victim"]:
        p = r["task"]["params"]
        victims.setdefault((p["dataset"], p["victim"]["key"]), {})[int(p.get("victim_seed", 0))] = r["result"]
    feet = {r["task"]["id"]: r["result"] for r in load_records(run, "footprint")}
    cells: dict[tuple[str, str, str], dict[tuple[int, int], dict[str, Any]]] = {}
    planned_vs = set(exp.get("victim_seeds", [0]))
    for r in records["attack"]:
        p = r["task"]["params"]
        if p["attack"] not in exp["attacks"] or int(p["seed"]) not in seeds_for(exp, p["attack"]):
            continue  # a cell of a larger grid run into the same directory: not part of this report
        if int(p.get("victim_seed", 0)) not in planned_vs:
            continue
        cells.setdefault((p["dataset"], p["victim"]["key"], p["attack"]), {})[
            (int(p.get("victim_seed", 0)), int(p["seed"]))
        ] = r["result"]
    errors = sorted(p.name[: -len(".error.json")] for p in run.glob("*/*.error.json"))
    vseeds = exp.get("victim_seeds", [0])
    per_victim = sum(len(seeds_for(exp, a)) for a in exp["attacks"])
    expected = len(exp["datasets"]) * len(exp["victims"]) * per_victim * len(vseeds)
    out: dict[str, Any] = {
        "experiment": exp,
        "confidence": confidence,
        "datasets": [],
        "cells_expected": expected,
        "cells_finished": sum(len(v) for v in cells.values()),
        "failed_tasks": errors,
        "numerics": numerics_of(records),
    }
    for d in exp["datasets"]:
        out["datasets"].append(_dataset_summary(exp, d, victims, cells, feet, confidence))
    return out


def numerics_of(records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The float numerics the run's tasks were computed under (scheduler records each task's), with how many
    tasks each; more than one entry means same-seed cells may differ by float rounding. `records`: the task
    records by stage (`FLOAT_STAGES`). Records written before tasks recorded it count under
    `{"cpu_capability": None}`."""
    counts: dict[tuple[tuple[str, Any], ...], int] = {}
    for stage in FLOAT_STAGES:
        for r in records.get(stage, []):
            key = tuple(sorted((r.get("numerics") or {"cpu_capability": None}).items()))
            counts[key] = counts.get(key, 0) + 1
    return [{**dict(k), "tasks": n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def seeds_for(exp: dict[str, Any], attack: str) -> list[int]:
    """An attack's seeds in a recorded experiment (config.Experiment.seeds_for, on its JSON form)."""
    return exp.get("attack_seeds", {}).get(attack, exp["seeds"])


def timing_of(run_dir: str | Path) -> dict[str, Any]:
    """Wall times of a run's tasks (for `timing.json`; they vary from run to run, so they stay out of the report)."""
    return _timing(Path(run_dir))


def _timing(run: Path) -> dict[str, Any]:
    """Per stage: finished tasks, summed and longest wall time (s); and the span from first start to last finish
    (it includes any pauses between resumed runs)."""
    from datetime import datetime

    stages: dict[str, dict[str, Any]] = {}
    starts, ends = [], []
    for stage in ("teacher", "model", "build", "victim", "footprint", "attack"):
        recs = [r for r in load_records(run, stage) if "wall_s" in r]
        if recs:
            w = [float(r["wall_s"]) for r in recs]
            stages[stage] = {"tasks": len(w), "wall_s_total": round(sum(w), 1), "wall_s_max": round(max(w), 1)}
            starts += [datetime.fromisoformat(r["started_utc"]) for r in recs if r.get("started_utc")]
            ends += [datetime.fromisoformat(r["finished_utc"]) for r in recs if r.get("finished_utc")]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    return {"stages": stages, "span_s": span}


def _budget(exp: dict[str, Any], attack: str, results: dict) -> int:
    """The budget the cells ran with (as recorded), else the profile's."""
    for r in results.values():
        if r.get("budget") is not None:
            return int(r["budget"])
    return int(exp["profile"]["attacks"][attack]["budget"])


def _mean_of(results: dict[int, dict[str, Any]], key: str) -> dict[str, Any] | None:
    vals = [r[key] for _, r in sorted(results.items()) if r.get(key) is not None]
    return summarize(vals).to_dict() if vals else None


def _dataset_summary(
    exp: dict[str, Any], d: dict[str, Any], victims: dict, cells: dict, feet: dict, confidence: float
) -> dict[str, Any]:
    ds = d["victim"]
    n_vseeds = len(exp.get("victim_seeds", [0]))
    rows = []
    for v in exp["victims"]:
        vr = victims.get((ds, v["key"]), {})
        acc = _mean_of(vr, "accuracy")
        row: dict[str, Any] = {
            "victim": v["key"],
            "label": v["label"],
            "method": v["method"],
            "alpha": v["alpha"],
            "objective": v.get("objective", "paper" if v["method"] == "divqat" else None),
            "defense": v["defense"],
            "beta": v["beta"],
            "accuracy": None if acc is None else acc["mean"],
            "accuracy_seeds": acc,
            "victim_seeds": sorted(vr),
            **{
                k: _mean_of(vr, k)
                for k in (
                    "l1_vs_qat",
                    "l1_vs_undefended",
                    "l1_vs_teacher",
                    "agreement_with_teacher",
                    "agreement_with_qat",
                )
            },
            "attacks": {},
        }
        for a in exp["attacks"]:
            res = cells.get((ds, v["key"], a), {})
            keys = sorted(res)
            row["attacks"][a] = {
                "budget": _budget(exp, a, res),
                "seeds": [f"v{k[0]}/s{k[1]}" for k in keys],
                "n_expected": len(seeds_for(exp, a)) * n_vseeds,
                **{m: summarize([res[k][m] for k in keys]).to_dict() for m in METRICS},
                "queries": [int(res[k].get("queries", 0)) for k in keys],
            }
        rows.append(row)
    return {
        "dataset": ds,
        "surrogate": d["surrogate"],
        "arch": d["arch"],
        "rows": rows,
        "comparisons": _comparisons(exp, ds, rows, cells, confidence),
        "alpha_sweep": _alpha_sweep(exp, rows),
        "tradeoff": _tradeoff(exp, rows),
        "footprint": _footprint(exp, ds, rows, feet),
    }


def _pairs(exp: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(treatment, control) pairs: every DivQAT variant against the QAT victim with the same defence (the
    question asked), then every defended QAT victim against plain QAT (the baselines' effect, for scale)."""
    qat = {(v["defense"], v["beta"]): v for v in exp["victims"] if v["method"] == "qat"}
    div = [
        (v, qat[(v["defense"], v["beta"])])
        for v in exp["victims"]
        if v["method"] == "divqat" and (v["defense"], v["beta"]) in qat
    ]
    base = [
        (v, qat[(None, None)])
        for v in exp["victims"]
        if v["method"] == "qat" and v["defense"] is not None and (None, None) in qat
    ]
    return div + base


#: an attack whose stolen accuracy stays within this of chance (1/K) learned nothing worth comparing
NEAR_CHANCE = 0.05


def _num_classes(ds: str) -> int | None:
    from divqat_tvm.data import dataset_info

    try:
        return dataset_info(ds.partition("@")[0]).num_classes
    except DivqatError:
        return None


def _comparisons(
    exp: dict[str, Any], ds: str, rows: list[dict[str, Any]], cells: dict, confidence: float
) -> list[dict[str, Any]]:
    """Every (treatment, control) pair under every attack; intervals Holm-corrected over this list, per metric."""
    acc = {r["victim"]: r["accuracy"] for r in rows}
    k = _num_classes(ds)
    out = []
    raw: dict[str, list] = {m: [] for m in METRICS}
    for treat, ctrl in _pairs(exp):
        for a in exp["attacks"]:
            t = cells.get((ds, treat["key"], a), {})
            c = cells.get((ds, ctrl["key"], a), {})
            comp = {
                "attack": a,
                "treatment": treat["key"],
                "treatment_label": treat["label"],
                "control": ctrl["key"],
                "control_label": ctrl["label"],
                "budget": _budget(exp, a, t or c),
                "treatment_accuracy": acc.get(treat["key"]),
                "control_accuracy": acc.get(ctrl["key"]),
                "accuracy_cost": None
                if acc.get(treat["key"]) is None or acc.get(ctrl["key"]) is None
                else acc[ctrl["key"]] - acc[treat["key"]],
            }
            for m in METRICS:
                raw[m].append(compare({key: r[m] for key, r in t.items()}, {key: r[m] for key, r in c.items()}))
            stolen = [r["stolen_accuracy"] for r in (*t.values(), *c.values())]
            comp["chance"] = None if k is None else 1.0 / k
            comp["near_chance"] = bool(k and stolen and sum(stolen) / len(stolen) < 1.0 / k + NEAR_CHANCE)
            out.append(comp)
    for m in METRICS:
        for comp, res in zip(out, corrected(raw[m], confidence)):
            comp[m] = res
    return out


def _alpha_sweep(exp: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undefended QAT (α = 0: DivQAT's loss reduces to QAT's) and every undefended DivQAT α, sorted by α."""
    pts = []
    for r in rows:
        if r["defense"] is None and (r["method"] == "qat" or (r["method"] == "divqat" and r["objective"] == "paper")):
            alpha = 0.0 if r["method"] == "qat" else float(r["alpha"])
            pts.append(
                {
                    "alpha": alpha,
                    "victim": r["victim"],
                    "accuracy": r["accuracy"],
                    "fidelity": {a: r["attacks"][a]["fidelity"] for a in exp["attacks"]},
                    "stolen_accuracy": {a: r["attacks"][a]["stolen_accuracy"] for a in exp["attacks"]},
                }
            )
    if not any(p["alpha"] > 0 for p in pts):
        return []
    return sorted(pts, key=lambda p: (p["alpha"], p["victim"] != "qat"))


#: trade-off series: name → which rows belong to it (QAT is every sweep's zero point)
def _series(r: dict[str, Any]) -> str | None:
    if r["method"] == "qat" and r["defense"] is None:
        return "QAT"
    if r["method"] == "qat":
        return f"QAT + {r['defense'].upper()} (β sweep)"
    if r["method"] == "divqat" and r["defense"] is None:
        return "DivQAT (α sweep)" if r["objective"] == "paper" else f"DivQAT-{r['objective']} (α sweep)"
    if r["method"] == "divqat":
        return f"DivQAT{'' if r['objective'] == 'paper' else '-' + r['objective']} + {r['defense'].upper()}"
    return None


def _tradeoff(exp: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per attack, one point per quantized victim: victim accuracy, mean L1 distance of its answers from the
    undefended QAT model's, and stolen fidelity (mean ± std over seeds), grouped into series."""
    out: dict[str, list[dict[str, Any]]] = {}
    for a in exp["attacks"]:
        pts = []
        for r in rows:
            s = _series(r)
            if s is None or r["accuracy"] is None or not r["attacks"][a]["fidelity"]["n"]:
                continue
            pts.append(
                {
                    "series": s,
                    "victim": r["victim"],
                    "label": r["label"],
                    "alpha": r["alpha"],
                    "beta": r["beta"],
                    "accuracy": r["accuracy"],
                    "l1_vs_qat": (r["l1_vs_qat"] or {}).get("mean"),
                    "fidelity": r["attacks"][a]["fidelity"]["mean"],
                    "fidelity_std": r["attacks"][a]["fidelity"]["std"],
                }
            )
        if pts:
            out[a] = pts
    return out


def _footprint(exp: dict[str, Any], ds: str, rows: list[dict[str, Any]], feet: dict[str, Any]) -> list[dict[str, Any]]:
    import re

    out = []
    for r in rows:
        base = f"{ds}__{r['victim']}"  # measured for the first victim seed only (the same network for every seed)
        f = next((feet[k] for k in sorted(feet) if re.fullmatch(re.escape(base) + r"(__v\d+)?", k)), None)
        if f is not None:
            out.append(
                {
                    "victim": r["victim"],
                    "label": r["label"],
                    **{
                        k: f.get(k)
                        for k in (
                            "instructions_per_inference",
                            "model_per_inference",
                            "postprocess_per_inference",
                            "unit",
                            "flash_bytes",
                            "ram_bytes",
                            "stack_bytes",
                            "board",
                            "core",
                        )
                    },
                }
            )
    return out
