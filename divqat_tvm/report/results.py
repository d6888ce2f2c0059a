"""Gather a run directory's per-task JSON into one summary: the report's single source of truth.

Reads `<run>/experiment.json` (the resolved config), `<run>/victim/*.json` (victim accuracy),
`<run>/attack/*.json` (one per attack cell: stolen accuracy, fidelity, queries) and `<run>/footprint/*.json`
(instructions per inference, flash, RAM), and computes means over seeds, paired DivQAT-vs-QAT differences
and the α sweep. Nothing here formats text; `render.py` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from divqat_tvm.errors import DivqatError
from divqat_tvm.report.stats import paired_difference, summarize

METRICS = ("fidelity", "stolen_accuracy")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DivqatError(f"The result file {path} is not valid JSON ({e}).", "Delete it and re-run the experiment to recompute that task.") from None


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
        raise DivqatError(f"{run} holds no experiment.json, so it is not an experiment run directory.",
                          "Pass the --out directory of `divqat-tvm experiment` or `divqat-tvm demo`.")
    exp = _read(exp_path)
    victims = {(r["task"]["params"]["dataset"], r["task"]["params"]["victim"]["key"]): r["result"] for r in load_records(run, "victim")}
    feet = {r["task"]["id"]: r["result"] for r in load_records(run, "footprint")}
    cells: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in load_records(run, "attack"):
        p = r["task"]["params"]
        cells.setdefault((p["dataset"], p["victim"]["key"], p["attack"]), {})[int(p["seed"])] = r["result"]
    errors = sorted(p.name[: -len(".error.json")] for p in run.glob("*/*.error.json"))
    timing = _timing(run)
    expected = len(exp["datasets"]) * len(exp["victims"]) * len(exp["attacks"]) * len(exp["seeds"])
    out: dict[str, Any] = {"experiment": exp, "confidence": confidence, "datasets": [],
                           "cells_expected": expected, "cells_finished": sum(len(v) for v in cells.values()),
                           "failed_tasks": errors, "timing": timing}
    for d in exp["datasets"]:
        out["datasets"].append(_dataset_summary(exp, d, victims, cells, feet, confidence))
    return out


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


def _budget(exp: dict[str, Any], attack: str, results: dict[int, dict[str, Any]]) -> int:
    """The budget the cells ran with (as recorded), else the profile's."""
    for r in results.values():
        if r.get("budget") is not None:
            return int(r["budget"])
    return int(exp["profile"]["attacks"][attack]["budget"])


def _dataset_summary(exp: dict[str, Any], d: dict[str, Any], victims: dict, cells: dict, feet: dict, confidence: float) -> dict[str, Any]:
    ds = d["victim"]
    rows = []
    for v in exp["victims"]:
        vr = victims.get((ds, v["key"]))
        row: dict[str, Any] = {"victim": v["key"], "label": v["label"], "method": v["method"], "alpha": v["alpha"],
                               "defense": v["defense"], "beta": v["beta"],
                               "accuracy": None if vr is None else float(vr["accuracy"]), "attacks": {}}
        for a in exp["attacks"]:
            res = cells.get((ds, v["key"], a), {})
            row["attacks"][a] = {
                "budget": _budget(exp, a, res), "seeds": sorted(res), "n_expected": len(exp["seeds"]),
                **{m: summarize([res[s][m] for s in sorted(res)]).to_dict() for m in METRICS},
                "queries": [int(res[s].get("queries", 0)) for s in sorted(res)],
                "wall_s": [float(res[s].get("wall_s", 0.0)) for s in sorted(res)],
            }
        rows.append(row)
    return {"dataset": ds, "surrogate": d["surrogate"], "arch": d["arch"], "rows": rows,
            "comparisons": _comparisons(exp, ds, rows, cells, confidence),
            "alpha_sweep": _alpha_sweep(exp, rows), "footprint": _footprint(exp, ds, rows, feet)}


def _pairs(exp: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(treatment, control) pairs: every DivQAT variant against the QAT victim with the same defence (the
    question asked), then every defended QAT victim against plain QAT (the baselines' effect, for scale)."""
    qat = {(v["defense"], v["beta"]): v for v in exp["victims"] if v["method"] == "qat"}
    div = [(v, qat[(v["defense"], v["beta"])]) for v in exp["victims"]
           if v["method"] == "divqat" and (v["defense"], v["beta"]) in qat]
    base = [(v, qat[(None, None)]) for v in exp["victims"]
            if v["method"] == "qat" and v["defense"] is not None and (None, None) in qat]
    return div + base


#: an attack whose stolen accuracy stays within this of chance (1/K) learned nothing worth comparing
NEAR_CHANCE = 0.05


def _num_classes(ds: str) -> int | None:
    from divqat_tvm.data import dataset_info

    try:
        return dataset_info(ds).num_classes
    except DivqatError:
        return None


def _comparisons(exp: dict[str, Any], ds: str, rows: list[dict[str, Any]], cells: dict, confidence: float) -> list[dict[str, Any]]:
    acc = {r["victim"]: r["accuracy"] for r in rows}
    k = _num_classes(ds)
    out = []
    for treat, ctrl in _pairs(exp):
        for a in exp["attacks"]:
            t = cells.get((ds, treat["key"], a), {})
            c = cells.get((ds, ctrl["key"], a), {})
            comp = {"attack": a, "treatment": treat["key"], "treatment_label": treat["label"],
                    "control": ctrl["key"], "control_label": ctrl["label"], "budget": _budget(exp, a, t or c),
                    "treatment_accuracy": acc.get(treat["key"]), "control_accuracy": acc.get(ctrl["key"]),
                    "accuracy_cost": None if acc.get(treat["key"]) is None or acc.get(ctrl["key"]) is None
                    else acc[ctrl["key"]] - acc[treat["key"]]}
            for m in METRICS:
                comp[m] = paired_difference({s: r[m] for s, r in t.items()}, {s: r[m] for s, r in c.items()}, confidence).to_dict()
            stolen = [r["stolen_accuracy"] for r in (*t.values(), *c.values())]
            comp["chance"] = None if k is None else 1.0 / k
            comp["near_chance"] = bool(k and stolen and sum(stolen) / len(stolen) < 1.0 / k + NEAR_CHANCE)
            out.append(comp)
    return out


def _alpha_sweep(exp: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undefended QAT (α = 0: DivQAT's loss reduces to QAT's) and every undefended DivQAT α, sorted by α."""
    pts = []
    for r in rows:
        if r["defense"] is None and (r["method"] == "qat" or r["method"] == "divqat"):
            alpha = 0.0 if r["method"] == "qat" else float(r["alpha"])
            pts.append({"alpha": alpha, "victim": r["victim"], "accuracy": r["accuracy"],
                        "fidelity": {a: r["attacks"][a]["fidelity"] for a in exp["attacks"]},
                        "stolen_accuracy": {a: r["attacks"][a]["stolen_accuracy"] for a in exp["attacks"]}})
    if not any(p["alpha"] > 0 for p in pts):
        return []
    return sorted(pts, key=lambda p: (p["alpha"], p["victim"] != "qat"))


def _footprint(exp: dict[str, Any], ds: str, rows: list[dict[str, Any]], feet: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        f = feet.get(f"{ds}__{r['victim']}")
        if f is not None:
            out.append({"victim": r["victim"], "label": r["label"], **{k: f.get(k) for k in
                        ("instructions_per_inference", "model_per_inference", "postprocess_per_inference", "unit",
                         "flash_bytes", "ram_bytes", "stack_bytes", "board", "core")}})
    return out
