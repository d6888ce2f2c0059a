"""The same config gives a byte-identical report.json whatever --workers: a tiny in-distribution grid with two
victim seeds, run once with 1 worker and once with 2 (separate run directories and caches), and once more
from its finished JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.run import run_experiment
from divqat_tvm.report.results import load_records

TINY = {
    "name": "tiny-indist",
    "seeds": [0, 1],
    "victim_seeds": [0, 1],
    "attacks": ["knockoff"],
    "datasets": [{"victim": "mnist5k@victim", "surrogate": "mnist5k@attacker"}],
    "victims": [
        {"method": "qat"},
        {"method": "divqat", "alpha": 1.0, "objective": "nontop"},
        {"method": "qat", "defense": "rs", "beta": 1.0},
    ],
    "overrides": {
        "teacher": {"epochs": 1},
        "quantize": {"epochs": 1, "calibration_batches": 4},
        "attacks": {"knockoff": {"budget": 200, "query_batch": 50, "fit": {"epochs": 2}}},
    },
}


@pytest.mark.slow
def test_report_json_is_byte_identical_for_1_and_2_workers(tmp_path: Path) -> None:
    exp = validate_experiment(TINY, "tiny.toml")
    quiet = Console(file=open("/dev/null", "w"))
    reports = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        summary, paths = run_experiment(exp, out, workers=workers, console=quiet)
        assert summary.ok, summary.failed
        reports.append(paths["json"].read_bytes())
    assert reports[0] == reports[1]
    rep = json.loads(reports[0])
    assert rep["cells_finished"] == 3 * 2 * 2 and "timing" not in rep
    victims = {r["task"]["id"]: r["result"] for r in load_records(tmp_path / "w1", "victim")}
    assert (
        victims["mnist5k@victim__qat"]["l1_vs_qat"] == 0.0
        and victims["mnist5k@victim__qat"]["agreement_with_qat"] == 1.0
    )
    assert victims["mnist5k@victim__qat+rs-b1__v1"]["l1_vs_undefended"] > 0.05  # RS at β = 1 moves the answers
    assert 0.0 < victims["mnist5k@victim__divqat-nontop-a1"]["agreement_with_teacher"] <= 1.0
    # the same student weights in both runs (cache directories are separate)
    w1 = sorted(p.read_bytes() for p in (tmp_path / "w1" / "cache" / "model").glob("*/model.pt"))
    w2 = sorted(p.read_bytes() for p in (tmp_path / "w2" / "cache" / "model").glob("*/model.pt"))
    assert len(w1) == 4 and w1 == w2
