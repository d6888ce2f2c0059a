"""Holm-corrected comparisons, victim seeds as a random effect, effect sizes, and a report that depends on the
results only (byte-identical report.json whatever the wall times)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.report.render import render_report
from divqat_tvm.report.stats import compare, corrected, holm_levels


def _holm_reference(p: list[float], alpha: float) -> list[bool]:
    """Holm's step-down, written out independently: reject in order while p_(j) <= alpha / (m - j)."""
    order = np.argsort(p)
    rej = [False] * len(p)
    for j, i in enumerate(order):
        if p[i] > alpha / (len(p) - j):
            break
        rej[i] = True
    return rej


def test_holm_adjusted_p_values_and_rejections() -> None:
    adj, level, rej = holm_levels([0.01, 0.04, 0.03, 0.005], 0.05)
    # textbook: sorted 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rej == [True, False, False, True]
    assert level == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])


@pytest.mark.parametrize("seed", range(20))
def test_corrected_intervals_exclude_zero_exactly_when_holm_rejects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    comps = []
    for _ in range(6):
        effect = rng.choice([0.0, -0.02, -0.05])
        t = {(0, s): 0.9 + effect + rng.normal(0, 0.02) for s in range(10)}
        c = {(0, s): 0.9 + rng.normal(0, 0.02) for s in range(10)}
        comps.append(compare(t, c))
    res = corrected(comps, 0.95)
    ref = _holm_reference([c.p_value for c in comps], 0.05)
    for r, want in zip(res, ref):
        excludes = r["high"] < 0 or r["low"] > 0
        assert excludes == want
        assert (r["verdict"] in ("lowered", "raised")) == want
        # the corrected interval is never narrower than the uncorrected one
        assert r["low"] <= r["raw_low"] + 1e-12 and r["high"] >= r["raw_high"] - 1e-12


def test_one_victim_seed_is_a_paired_t_over_attack_seeds() -> None:
    t = {(0, s): v for s, v in enumerate([0.80, 0.79, 0.83, 0.80, 0.78])}
    c = {(0, s): v for s, v in enumerate([0.86, 0.84, 0.90, 0.85, 0.83])}
    r = compare(t, c)
    ref = sps.ttest_rel(list(t.values()), list(c.values()))
    assert r.unit == "attack seed" and r.df == 4
    assert r.p_value == pytest.approx(ref.pvalue)
    lo, hi = r.interval(0.95)
    ci = ref.confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_several_victim_seeds_make_the_victim_seed_the_unit() -> None:
    rng = np.random.default_rng(0)
    t, c = {}, {}
    for v, shift in enumerate([-0.06, -0.01, -0.005]):  # DivQAT's effect differs from victim to victim
        for s in range(10):
            base = 0.9 + rng.normal(0, 0.01)
            c[(v, s)] = base
            t[(v, s)] = base + shift + rng.normal(0, 0.005)
    r = compare(t, c)
    cluster_means = [np.mean([t[(v, s)] - c[(v, s)] for s in range(10)]) for v in range(3)]
    ref = sps.ttest_1samp(cluster_means, 0.0)
    assert r.unit == "victim seed" and r.df == 2 and (r.n, r.n_victims, r.n_seeds) == (30, 3, 10)
    assert r.p_value == pytest.approx(ref.pvalue)
    # 30 pairs treated as independent would call this a clear effect; the victim-seed unit does not
    naive = sps.ttest_1samp([t[k] - c[k] for k in t], 0.0)
    assert naive.pvalue < 0.05 < r.p_value


def test_effect_size_is_the_standardised_mean_difference() -> None:
    t = {(0, s): 0.8 + 0.01 * s for s in range(5)}
    c = {(0, s): 0.85 + 0.015 * s for s in range(5)}
    (r,) = corrected([compare(t, c)])
    d = np.array([t[k] - c[k] for k in t])
    assert r["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert r["effect_low"] == pytest.approx(r["low"] / d.std(ddof=1))


# ---------------------------------------------------------------- a run with victim seeds

CONFIG = {
    "name": "vs",
    "profile": "quick",
    "seeds": [0, 1, 2, 3],
    "victim_seeds": [0, 1, 2],
    "attacks": ["knockoff"],
    "victims": [
        {"method": "qat"},
        {"method": "divqat", "alpha": [1, 2]},
        {"method": "divqat", "alpha": 1, "objective": "nontop"},
        {"method": "qat", "defense": "rs", "beta": 1.0},
    ],
}


def _record(stage, tid, params, result, wall=2.0, day="01"):
    return {
        "format_version": 1,
        "task": {"stage": stage, "id": tid, "params": params, "deps": []},
        "result": result,
        "wall_s": wall,
        "started_utc": f"2026-01-{day}T00:00:00+00:00",
        "finished_utc": f"2026-01-{day}T00:10:00+00:00",
    }


def make_run(root: Path, wall: float = 2.0, day: str = "01") -> Path:
    exp = validate_experiment(CONFIG, "vs.toml")
    for d in ("victim", "attack"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "experiment.json").write_text(json.dumps(exp.to_dict()))
    shift = {"qat": 0.0, "divqat-a1": -0.01, "divqat-a2": -0.30, "divqat-nontop-a1": 0.0, "qat+rs-b1": -0.2}
    for vs in exp.victim_seeds:
        for v in exp.victims:
            vid = f"mnist5k__{v.key}" + ("" if vs == 0 else f"__v{vs}")
            res = {"accuracy": 0.95 - 0.001 * vs, "l1_vs_qat": abs(shift[v.key]), "agreement_with_teacher": 0.99}
            (root / "victim" / f"{vid}.json").write_text(
                json.dumps(
                    _record(
                        "victim",
                        vid,
                        {"dataset": "mnist5k", "victim": v.to_dict(), **({"victim_seed": vs} if vs else {})},
                        res,
                        wall,
                        day,
                    )
                )
            )
            for s in exp.seeds:
                cid = f"mnist5k__{v.key}__knockoff__s{s}" + ("" if vs == 0 else f"__v{vs}")
                f = 0.9 + shift[v.key] + 0.01 * ((s * 7 + vs * 3) % 5) / 5
                p = {
                    "dataset": "mnist5k",
                    "victim": v.to_dict(),
                    "attack": "knockoff",
                    "seed": s,
                    **({"victim_seed": vs} if vs else {}),
                }
                (root / "attack" / f"{cid}.json").write_text(
                    json.dumps(
                        _record(
                            "attack", cid, p, {"fidelity": f, "stolen_accuracy": f - 0.05, "budget": 2000}, wall, day
                        )
                    )
                )
    return root


def test_report_with_victim_seeds_objective_and_tradeoff(tmp_path: Path) -> None:
    paths = render_report(make_run(tmp_path))
    s = json.loads(paths["json"].read_text())
    ds = s["datasets"][0]
    assert s["cells_expected"] == s["cells_finished"] == 5 * 4 * 3
    comps = {c["treatment"]: c for c in ds["comparisons"]}
    assert set(comps) == {"divqat-a1", "divqat-a2", "divqat-nontop-a1", "qat+rs-b1"}
    a2 = comps["divqat-a2"]["fidelity"]
    assert (a2["unit"], a2["n_victims"], a2["n_seeds"], a2["family_size"]) == ("victim seed", 3, 4, 4)
    assert a2["verdict"] == "lowered" and a2["mean"] == pytest.approx(-0.30)
    assert comps["divqat-nontop-a1"]["fidelity"]["verdict"] == "within noise"
    rows = {r["victim"]: r for r in ds["rows"]}
    assert (
        rows["divqat-nontop-a1"]["label"] == "DivQAT-nontop (α=1)" and rows["divqat-nontop-a1"]["objective"] == "nontop"
    )
    assert rows["qat"]["accuracy_seeds"]["n"] == 3
    series = {p["series"] for p in ds["tradeoff"]["knockoff"]}
    assert series == {"QAT", "DivQAT (α sweep)", "DivQAT-nontop (α sweep)", "QAT + RS (β sweep)"}
    md = paths["md"].read_text()
    assert "Holm-corrected 95% CI" in md and "over 3 victim seed(s) × 4 attack seed(s)" in md
    assert "tradeoff_knockoff_mnist5k.png" in md


def test_report_json_is_byte_identical_whatever_the_timings(tmp_path: Path) -> None:
    a = render_report(make_run(tmp_path / "a", wall=2.0, day="01"))["json"].read_bytes()
    b = render_report(make_run(tmp_path / "b", wall=9.5, day="05"))["json"].read_bytes()
    assert a == b
    again = render_report(tmp_path / "a")["json"].read_bytes()
    assert again == a
    md_a, md_b = (tmp_path / "a" / "report.md").read_text(), (tmp_path / "b" / "report.md").read_text()
    assert md_a.replace(str(tmp_path / "a"), "RUN") == md_b.replace(str(tmp_path / "b"), "RUN")
    assert not math.isnan(json.loads((tmp_path / "b" / "timing.json").read_text())["span_s"])
