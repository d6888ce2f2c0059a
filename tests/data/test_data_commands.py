"""`divqat-tvm datasets`: lists every dataset and reports which downloaded files are present."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from divqat_tvm.cli import app


def test_datasets_command_reports_found_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, fh)
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│")}
    assert {"cifar10", "cifar100", "svhn", "mnist5k", "digits", "synthetic"} <= set(rows)
    assert "found" in rows["cifar10"] and "missing" in rows["cifar100"] and "built in" in rows["mnist5k"]
    assert "svhn/train_32x32.mat" in result.output and "cifar-100-python/train" in result.output
    assert "cifar-10-batches-py/test_batch" not in result.output
