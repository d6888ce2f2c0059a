"""End to end: a tiny grid on the embedded default through the torch backend, the real pipeline, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.run import run_experiment
from divqat_tvm.report.results import load_records

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "attacks": ["knockoff", "dfme"],
    "victims": [
        {"method": "qat"},
        {"method": "divqat", "alpha": 1.0},
        {"method": "qat", "defense": "dcp", "beta": 1.0},
    ],
    "overrides": {
        "teacher": {"epochs": 1},
        "quantize": {"epochs": 1, "calibration_batches": 4},
        "attacks": {
            "knockoff": {"budget": 200, "query_batch": 50, "fit": {"epochs": 2}},
            "dfme": {"budget": 500, "batch_size": 8, "nz": 16, "ngf": 8},
        },
    },
}


@pytest.mark.slow
def test_tiny_grid_runs_reports_and_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    exp = validate_experiment(TINY, "tiny.toml")
    out = tmp_path / "run"
    quiet = Console(file=open("/dev/null", "w"))
    summary, paths = run_experiment(exp, out, workers=1, console=quiet)
    assert summary.ok, summary.failed
    cells = load_records(out, "attack")
    assert len(cells) == 3 * 2 * 2
    for c in cells:
        r = c["result"]
        assert 0.0 <= r["stolen_accuracy"] <= 1.0 and 0.0 <= r["fidelity"] <= 1.0
        assert r["queries"] <= r["budget"] == exp.profile.attacks[c["task"]["params"]["attack"]]["budget"]
    victims = {r["task"]["id"]: r["result"] for r in load_records(out, "victim")}
    # the oracle's argmax of softmax on the test set agrees with the model's own logits (two code paths)
    assert victims["mnist5k__qat"]["accuracy"] == pytest.approx(victims["mnist5k__qat"]["model_accuracy_torch"])
    assert victims["mnist5k__qat+dcp-b1"]["defense"] == "dcp:beta=1,gamma=0.1,nu=1000"
    # QAT and QAT+DCP deploy one trained model: a single model task, a single cached student
    assert len(list((out / "cache" / "model").glob("*/artefact.json"))) == 2
    report = json.loads(paths["json"].read_text())
    assert report["cells_finished"] == 12 and len(report["datasets"][0]["comparisons"]) == 4
    assert "DivQAT (α=1)" in paths["md"].read_text()
    # finished cells keep their result and student, not their query logs (answers and fingerprints only)
    assert all(c["result"]["attack_result"]["log_inputs"] is False for c in cells)
    assert not list((out / "work" / "attack").glob("*/queries.qlog"))
    assert len(list((out / "work" / "attack").glob("*/student.pt"))) == 12

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*.json")}
    again, _ = run_experiment(exp, out, workers=1, console=quiet)
    assert again.ran == [] and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
