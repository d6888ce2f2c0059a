"""Determinism by construction: the same seed gives bit-identical checkpoints whatever --threads says.

Trains a teacher and a DivQAT student through the CLI with --threads 1 and --threads 2 (synthetic 1x28x28
data, one epoch) and compares the checkpoint files byte for byte. The control test turns the fixed-thread
pinning off and shows that the thread count then does change the weights on this machine, so the first
test is not passing by accident.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

import divqat_tvm.train.determinism as det
from divqat_tvm.cli import main
from divqat_tvm.train.determinism import derive_seed, fixed_threads

DATA = "synthetic:1x28x28:10"
TWO_CORES = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for 2 threads to split the work")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_sha(path) -> str:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return hashlib.sha256(b"".join(sd[k].numpy().tobytes() for k in sorted(sd))).hexdigest()


def _train_and_quantize(d, threads: int) -> tuple:
    d.mkdir()
    t, s = d / "teacher.pt", d / "divqat.pt"
    common = ["--no-progress", "--threads", str(threads), "--seed", "3"]
    assert main(["train", "--dataset", DATA, "--epochs", "1", "--out", str(t), *common]) == 0
    assert (
        main(["quantize", str(t), "--method", "divqat", "--alpha", "1", "--epochs", "1", "--out", str(s), *common]) == 0
    )
    return t, s


@TWO_CORES
def test_same_seed_same_checkpoints_for_1_and_2_threads(tmp_path) -> None:
    before = torch.get_num_threads()
    t1, s1 = _train_and_quantize(tmp_path / "t1", 1)
    t2, s2 = _train_and_quantize(tmp_path / "t2", 2)
    torch.set_num_threads(before)
    assert _weights_sha(t1) == _weights_sha(t2)
    assert _weights_sha(s1) == _weights_sha(s2)
    # the files themselves, metadata included (timings go to <ckpt>.timing.json)
    assert _sha(t1) == _sha(t2)
    m1, m2 = (torch.load(p, map_location="cpu", weights_only=True)["meta"] for p in (s1, s2))
    assert m1.pop("teacher").endswith("t1/teacher.pt") and m2.pop("teacher").endswith("t2/teacher.pt")
    assert m1 == m2  # the student's metadata differs only by its teacher's path
    timing = json.loads((t1.parent / "teacher.pt.timing.json").read_text())
    assert timing["epochs"][0]["seconds"] > 0


@TWO_CORES
def test_control_without_pinning_threads_change_the_weights(tmp_path, monkeypatch) -> None:
    """Without `fixed_threads` the same seed gives other weights with 2 threads: the pinning is what fixes it."""
    monkeypatch.setattr(det, "NUMERIC_THREADS", 0)
    before = torch.get_num_threads()
    hashes = []
    for n in (1, 2):
        d = tmp_path / f"n{n}"
        d.mkdir()
        t = d / "teacher.pt"
        assert (
            main(["train", "--dataset", DATA, "--epochs", "1", "--out", str(t), "--no-progress", "--threads", str(n)])
            == 0
        )
        hashes.append(_weights_sha(t))
    torch.set_num_threads(before)
    assert hashes[0] != hashes[1]


def test_fixed_threads_restores_the_callers_count() -> None:
    torch.set_num_threads(2)
    with fixed_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), fixed_threads():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed("mnist5k", "qat", 0) == derive_seed("mnist5k", "qat", 0)
    assert derive_seed("mnist5k", "qat", 0) != derive_seed("mnist5k", "qat", 1)
    assert 0 <= derive_seed("x") < 2**31
