"""`--devices N`: N emulators behind one oracle answer a batch together, in order, byte-identical to one
emulator, so an attack's query log is the same file; on Ray the emulators are actors (a local cluster on
127.0.0.1, started and stopped here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle import open_oracle

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
needs_emulator = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("pool") / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


def _logged_run(build: Path, log: Path, devices: int, executor: str = "local") -> list[np.ndarray]:
    """Query batches (of uneven sizes: 1, 7, 33) through a logged oracle, as an attack does."""
    from divqat_tvm.attacks.querylog import LoggedOracle, QueryLog

    rng = np.random.default_rng(7)
    answers = []
    with open_oracle(f"qemu:{build}", devices=devices, executor=executor) as oracle:
        logged = LoggedOracle(oracle, QueryLog.open(log, {"attack": "test", "seed": 7, "log_inputs": True}))
        for n in (1, 7, 33):
            answers.append(logged.query(rng.uniform(-1, 1, (n, 1, 4, 4)).astype(np.float32)))
        assert oracle.queries == 41
    return answers


@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
def test_devices_answer_byte_identically_and_log_the_same_file(tiny_build: Path, tmp_path: Path) -> None:
    one = _logged_run(tiny_build, tmp_path / "d1.qlog", devices=1)
    for n in (2, 4):
        many = _logged_run(tiny_build, tmp_path / f"d{n}.qlog", devices=n)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(one, many))
        assert (tmp_path / f"d{n}.qlog").read_bytes() == (tmp_path / "d1.qlog").read_bytes()


@pytest.mark.slow
@pytest.mark.emulator
@needs_emulator
@pytest.mark.timeout(300)
def test_ray_actor_devices_answer_like_one_local_device(
    tiny_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray  # installed by the dev extra; a missing Ray fails the test

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a private cluster on 127.0.0.1, shut down on close
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    one = _logged_run(tiny_build, tmp_path / "d1.qlog", devices=1)
    actors = _logged_run(tiny_build, tmp_path / "ray2.qlog", devices=2, executor="ray")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(one, actors))
    assert (tmp_path / "ray2.qlog").read_bytes() == (tmp_path / "d1.qlog").read_bytes()
    assert not ray.is_initialized()  # closing the oracle stopped the cluster


def test_devices_are_refused_for_backends_without_emulators(tmp_path: Path) -> None:
    with pytest.raises(DivqatError, match="the torch backend has none"):
        open_oracle(f"torch:{tmp_path / 'v.pt'}", devices=2)
    with pytest.raises(DivqatError, match="at least 1"):
        open_oracle(f"qemu:{tmp_path}", devices=0)
