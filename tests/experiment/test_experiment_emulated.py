"""End to end on the emulated device: compile, firmware under QEMU (with an on-device defence), attack, footprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.run import run_experiment
from divqat_tvm.report.results import load_records

TINY_DEVICE = {
    "name": "tiny-device",
    "seeds": [0],
    "attacks": ["knockoff"],
    "victims": [{"method": "qat", "defense": "dcp", "beta": 1.0}],
    "oracle": {"backend": "qemu", "core": "cortex-m7", "board": "mps2-an500"},
    "footprint": {"enabled": True},
    "overrides": {
        "teacher": {"epochs": 1},
        "quantize": {"epochs": 1, "calibration_batches": 4},
        "attacks": {"knockoff": {"budget": 100, "query_batch": 50, "fit": {"epochs": 1}}},
    },
}

needs_tools = pytest.mark.needs_tools("qemu-system-arm", "arm-none-eabi-gcc")


@pytest.mark.slow
@pytest.mark.emulator
@needs_tools
def test_tiny_grid_through_qemu_with_footprints(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    quiet = Console(file=open("/dev/null", "w"))
    summary, paths = run_experiment(validate_experiment(TINY_DEVICE, "t.toml"), out, workers=1, console=quiet)
    assert summary.ok, summary.failed
    victims = {r["task"]["id"]: r["result"] for r in load_records(out, "victim")}
    v = victims["mnist5k__qat+dcp-b1"]
    assert v["oracle"].startswith("qemu:") and v["oracle"].endswith("@mps2-an500")
    assert v["defense"] == "dcp:beta=1,gamma=0.1,nu=1000"
    # the int8 firmware (with DCP, which keeps the top-1 in practice) and the fake-quant torch model agree
    assert abs(v["accuracy"] - v["model_accuracy_torch"]) < 0.02
    cells = {r["task"]["id"]: r["result"] for r in load_records(out, "attack")}
    assert [c["queries"] for c in cells.values()] == [100]
    f = load_records(out, "footprint")[0]["result"]
    assert f["unit"] == "instructions (emulated)" and f["board"] == "mps2-an500"
    assert f["postprocess_per_inference"] > 0 and f["model_per_inference"] > 100 * f["postprocess_per_inference"]
    assert f["instructions_per_inference"] == pytest.approx(f["model_per_inference"] + f["postprocess_per_inference"])
    assert "Defence cost on the device (mps2-an500)" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["datasets"][0]["footprint"][0]["victim"] == "qat+dcp-b1"
