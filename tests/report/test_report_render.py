"""Report rendering from a fixture run directory: numbers, paired intervals (against scipy), HTML, PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.report.render import headline, render_report
from divqat_tvm.report.results import summarize_run
from divqat_tvm.report.stats import paired_difference, summarize

SEEDS = [0, 1, 2, 3]
ACC = {
    "float": 0.97,
    "qat": 0.95,
    "divqat-a1": 0.94,
    "divqat-a2": 0.92,
    "qat+dcp-b0.5": 0.95,
    "divqat-a1+dcp-b0.5": 0.94,
}
# per victim, per attack: fidelity per seed (distinct enough to check means, std and paired differences)
FID = {
    "float": {"knockoff": [0.90, 0.88, 0.91, 0.89], "dfme": [0.50, 0.55, 0.52, 0.51]},
    "qat": {"knockoff": [0.86, 0.84, 0.90, 0.85], "dfme": [0.48, 0.50, 0.47, 0.49]},
    "divqat-a1": {"knockoff": [0.80, 0.79, 0.83, 0.80], "dfme": [0.50, 0.45, 0.49, 0.47]},
    "divqat-a2": {"knockoff": [0.70, 0.69, 0.73, 0.69], "dfme": [0.40, 0.41, 0.39, 0.40]},
    "qat+dcp-b0.5": {"knockoff": [0.82, 0.80, 0.85, 0.83], "dfme": [0.40, 0.42, 0.41, 0.44]},
    "divqat-a1+dcp-b0.5": {"knockoff": [0.84, 0.79, 0.86, 0.80], "dfme": [0.41, 0.40, 0.43, 0.42]},
}
CONFIG = {
    "name": "fixture",
    "profile": "quick",
    "seeds": SEEDS,
    "attacks": ["knockoff", "dfme"],
    "victims": [
        {"method": "float"},
        {"method": "qat"},
        {"method": "divqat", "alpha": [1, 2]},
        {"method": "qat", "defense": "dcp", "beta": 0.5},
        {"method": "divqat", "alpha": 1, "defense": "dcp", "beta": 0.5},
    ],
    "footprint": {"enabled": True},
}
INSTR = {
    "qat": 812_000,
    "divqat-a1": 812_000,
    "divqat-a2": 812_000,
    "qat+dcp-b0.5": 815_500,
    "divqat-a1+dcp-b0.5": 815_500,
}


def _record(stage: str, tid: str, params: dict, result: dict) -> dict:
    return {
        "format_version": 1,
        "task": {"stage": stage, "id": tid, "params": params, "deps": []},
        "result": result,
        "wall_s": 2.0,
        "started_utc": "2026-01-01T00:00:00+00:00",
        "finished_utc": "2026-01-01T00:10:00+00:00",
    }


def make_run(root: Path, drop: tuple[str, ...] = ()) -> Path:
    """A run directory as the runner writes it, with the numbers above (cells in `drop` left out)."""
    exp = validate_experiment(CONFIG, "fixture.toml")
    (root / "victim").mkdir(parents=True)
    (root / "attack").mkdir()
    (root / "footprint").mkdir()
    (root / "experiment.json").write_text(json.dumps(exp.to_dict()))
    for v in exp.victims:
        vid = f"mnist5k__{v.key}"
        (root / "victim" / f"{vid}.json").write_text(
            json.dumps(_record("victim", vid, {"dataset": "mnist5k", "victim": v.to_dict()}, {"accuracy": ACC[v.key]}))
        )
        if v.key in INSTR:
            fp = {
                "instructions_per_inference": INSTR[v.key],
                "model_per_inference": 800_000,
                "postprocess_per_inference": INSTR[v.key] - 800_000,
                "unit": "instructions (emulated)",
                "flash_bytes": 40960,
                "ram_bytes": 20480,
                "stack_bytes": 1024,
                "board": "mps2-an500",
            }
            (root / "footprint" / f"{vid}.json").write_text(json.dumps(_record("footprint", vid, {}, fp)))
        for a in exp.attacks:
            for s in SEEDS:
                cid = f"mnist5k__{v.key}__{a}__s{s}"
                if cid in drop:
                    continue
                f = FID[v.key][a][s]
                res = {
                    "fidelity": f,
                    "stolen_accuracy": f - 0.05,
                    "queries": 2000,
                    "budget": 2000 if a == "knockoff" else 20000,
                }
                p = {"dataset": "mnist5k", "victim": v.to_dict(), "attack": a, "seed": s}
                (root / "attack" / f"{cid}.json").write_text(json.dumps(_record("attack", cid, p, res)))
    return root


def test_summary_numbers_match_the_fixture(tmp_path: Path) -> None:
    s = summarize_run(make_run(tmp_path))
    rows = {r["victim"]: r for r in s["datasets"][0]["rows"]}
    assert rows["divqat-a1"]["accuracy"] == pytest.approx(0.94)
    k = rows["qat"]["attacks"]["knockoff"]
    assert k["fidelity"]["mean"] == pytest.approx(np.mean(FID["qat"]["knockoff"]))
    assert k["fidelity"]["std"] == pytest.approx(np.std(FID["qat"]["knockoff"], ddof=1))
    assert k["budget"] == 2000 and rows["qat"]["attacks"]["dfme"]["budget"] == 20000
    assert s["cells_finished"] == s["cells_expected"] == 6 * 2 * 4


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_paired_interval_matches_scipy_ttest_rel(confidence: float) -> None:
    t = {s: v for s, v in zip(SEEDS, FID["divqat-a1"]["knockoff"])}
    c = {s: v for s, v in zip(SEEDS, FID["qat"]["knockoff"])}
    d = paired_difference(t, c, confidence)
    ref = sps.ttest_rel(FID["divqat-a1"]["knockoff"], FID["qat"]["knockoff"]).confidence_interval(confidence)
    assert d.mean == pytest.approx(np.mean(np.subtract(FID["divqat-a1"]["knockoff"], FID["qat"]["knockoff"])))
    assert (d.low, d.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert d.n == 4 and d.verdict == "lowered"


def test_paired_difference_pairs_only_common_seeds_and_handles_one_seed() -> None:
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.7}, {1: 0.5, 2: 0.5, 3: 0.1})
    assert d.seeds == (1, 2) and d.diffs == (pytest.approx(0.1), pytest.approx(0.2))
    one = paired_difference({0: 0.5}, {0: 0.6})
    assert one.verdict == "one seed" and np.isnan(one.low)
    assert summarize([0.3]).std == 0.0


def test_verdicts_in_sentences_follow_the_intervals(tmp_path: Path) -> None:
    render_report(make_run(tmp_path))
    md = (tmp_path / "report.md").read_text()
    s = json.loads((tmp_path / "report.json").read_text())
    comps = {(c["treatment"], c["attack"]): c for c in s["datasets"][0]["comparisons"]}
    assert set(comps) == {
        (t, a) for t in ("divqat-a1", "divqat-a2", "divqat-a1+dcp-b0.5", "qat+dcp-b0.5") for a in ("knockoff", "dfme")
    }
    assert comps[("qat+dcp-b0.5", "dfme")]["control"] == "qat"  # the baseline defence against plain QAT, for scale
    assert comps[("divqat-a1", "knockoff")]["control"] == "qat"
    assert comps[("divqat-a1+dcp-b0.5", "knockoff")]["control"] == "qat+dcp-b0.5"
    # divqat-a2 is clearly lower under both attacks; DivQAT+DCP vs QAT+DCP under knockoff straddles 0
    assert comps[("divqat-a2", "dfme")]["fidelity"]["verdict"] == "lowered"
    assert comps[("divqat-a1+dcp-b0.5", "knockoff")]["fidelity"]["verdict"] == "within noise"
    assert "Under KnockoffNets (2,000 queries, 4 seed(s)): DivQAT (α=2) lowered stolen fidelity against QAT by" in md
    assert "no evidence that DivQAT (α=1) + DCP (β=0.5) lowered it" in md
    # the main table prints mean ± std in percent with the budget in the header
    qat = np.array(FID["qat"]["knockoff"]) * 100
    assert f"{qat.mean():.1f} ± {qat.std(ddof=1):.1f}" in md
    assert "KnockoffNets @ 2,000 queries" in md and "DFME @ 20,000 queries" in md
    # wall times go to timing.json, never into report.json / report.md (which depend on the results only)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert (
        timing["stages"]["attack"] == {"tasks": 48, "wall_s_total": 96.0, "wall_s_max": 2.0}
        and timing["span_s"] == 600.0
    )
    assert "wall_s" not in (tmp_path / "report.json").read_text() and "2026-01-01" not in md
    assert "| QAT + DCP (β=0.5) | 800,000 | 15,500 | 815,500 | +0.43% | 40.0 | 20.0 | 1.0 |" in md  # DCP's cost


def test_html_is_self_contained_and_pngs_are_written(tmp_path: Path) -> None:
    paths = render_report(make_run(tmp_path))
    page = paths["html"].read_text()
    assert re.search(r"<(img|script|link)[^>]+(src|href)=['\"](?!data:)", page) is None
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(imgs) == 4  # α sweep, fidelity bars, one trade-off plot per attack
    import base64

    for key in ("alpha_mnist5k", "fidelity_mnist5k", "tradeoff_knockoff_mnist5k", "tradeoff_dfme_mnist5k"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(imgs[0]) == paths["alpha_mnist5k"].read_bytes()


def test_partial_runs_render_and_say_how_many_seeds(tmp_path: Path) -> None:
    render_report(make_run(tmp_path, drop=("mnist5k__qat__knockoff__s3",)))
    md = (tmp_path / "report.md").read_text()
    assert "(3/4 seeds)" in md and "47 of 48 attack cells finished" in md
    assert any("QAT" in line for line in headline(tmp_path))


def test_report_on_a_non_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DivqatError, match="not an experiment run directory"):
        render_report(tmp_path)


def test_an_attack_at_chance_is_called_uninformative_not_noise(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for p in (run / "attack").glob("*__dfme__*.json"):  # every DFME clone guesses: stolen accuracy about 1/K
        rec = json.loads(p.read_text())
        rec["result"]["stolen_accuracy"] = 0.1 + 0.01 * rec["task"]["params"]["seed"]
        p.write_text(json.dumps(rec))
    render_report(run)
    md = (run / "report.md").read_text()
    assert (
        "Under DFME (20,000 queries, 4 seed(s)): the attack stayed near chance (10%) against both DivQAT (α=2) and QAT"
        in md
    )
    assert "lowered (attack at chance)" in md  # the interval is still reported, with the caveat
    assert "Under KnockoffNets (2,000 queries, 4 seed(s)): DivQAT (α=2) lowered stolen fidelity" in md


def _stamp(run: Path, capability_of: dict[int, str]) -> None:
    """Give the fixture's attack records the numerics of the CPU that computed them, by attack seed."""
    for p in sorted((run / "attack").glob("*.json")):
        r = json.loads(p.read_text())
        cap = capability_of[int(r["task"]["params"]["seed"])]
        r["numerics"] = {"torch": "2.13.0+cpu", "cpu_capability": cap, "machine": "x86_64"}
        p.write_text(json.dumps(r))


def test_one_cpu_isa_is_stated_and_mixed_ones_are_flagged(tmp_path: Path) -> None:
    one = make_run(tmp_path / "one")
    _stamp(one, dict.fromkeys(SEEDS, "AVX512"))
    render_report(one)
    s = json.loads((one / "report.json").read_text())
    assert {n["cpu_capability"]: n["tasks"] for n in s["numerics"]} == {"AVX512": 48, None: 6}
    md = (one / "report.md").read_text()
    assert "Float numerics: torch 2.13.0+cpu, CPU capability AVX512 (x86_64): 48 task(s)" in md
    assert "Mixed" not in md
    mixed = make_run(tmp_path / "mixed")
    _stamp(mixed, {0: "AVX512", 1: "AVX512", 2: "AVX2", 3: "AVX512"})
    render_report(mixed)
    md = (mixed / "report.md").read_text()
    assert "**Mixed float numerics: " in md and "CPU capability AVX2 (x86_64): 12 task(s)" in md
    assert "<p class='warn'>Mixed float numerics" in (mixed / "report.html").read_text()


def test_an_attack_with_its_own_seeds_is_expected_with_those_only(tmp_path: Path) -> None:
    """Cells of an attack run with fewer seeds (config attack_seeds) are complete, not "2/4 seeds"."""
    run = make_run(tmp_path, drop=tuple(f"mnist5k__{v}__dfme__s{s}" for v in FID for s in (2, 3)))
    exp = json.loads((run / "experiment.json").read_text())
    exp["attack_seeds"] = {"dfme": [0, 1]}
    (run / "experiment.json").write_text(json.dumps(exp))
    s = summarize_run(run)
    assert s["cells_expected"] == s["cells_finished"] == 6 * (4 + 2)
    qat = next(r for r in s["datasets"][0]["rows"] if r["victim"] == "qat")
    assert (qat["attacks"]["knockoff"]["n_expected"], qat["attacks"]["dfme"]["n_expected"]) == (4, 2)
    render_report(run)
    md = (run / "report.md").read_text()
    assert "attack seeds [0, 1, 2, 3] (DFME: [0, 1])" in md and "4 (KnockoffNets), 2 (DFME)" in md
    assert "/4 seeds)" not in md  # no "(2/4 seeds)": every planned cell finished


def test_cells_outside_the_config_stay_out_of_the_report(tmp_path: Path) -> None:
    """A directory may hold cells of a larger grid (more seeds, another attack): the report counts only its own."""
    run = make_run(tmp_path)
    exp = json.loads((run / "experiment.json").read_text())
    exp["attack_seeds"] = {"dfme": [0, 1]}
    (run / "experiment.json").write_text(json.dumps(exp))
    s = summarize_run(run)
    assert s["cells_finished"] == s["cells_expected"] == 6 * (4 + 2)
    qat = next(r for r in s["datasets"][0]["rows"] if r["victim"] == "qat")
    assert qat["attacks"]["dfme"]["fidelity"]["mean"] == pytest.approx(np.mean(FID["qat"]["dfme"][:2]))
