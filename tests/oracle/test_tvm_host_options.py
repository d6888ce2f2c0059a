"""tvm-host's choice of library (--host-build) and threads, through the factory and the oracle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle import open_oracle
from divqat_tvm.oracle.factory import _BACKENDS, register_backend

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"


@pytest.fixture
def build(tmp_path: Path) -> Path:
    dst = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, dst)
    return dst


def test_factory_passes_host_build_and_threads_to_tvm_host():
    saved, calls = dict(_BACKENDS), []
    register_backend("tvm-host", lambda spec, defense, budget: calls.append(spec) or "oracle")
    try:
        open_oracle("tvm-host:build/m", host_build="portable", threads=3)
    finally:
        _BACKENDS.clear()
        _BACKENDS.update(saved)
    assert (calls[0].host_build, calls[0].threads) == ("portable", 3)


@pytest.mark.parametrize("kwargs", [{"host_build": "portable"}, {"threads": 2}])
def test_host_options_refused_for_other_backends(kwargs):
    with pytest.raises(DivqatError, match="choose the tvm-host library"):
        open_oracle("qemu:build/m", **kwargs)


def test_builds_and_threads_answer_the_same_bits(build):
    x = np.random.default_rng(0).uniform(-1, 1, (203, 1, 4, 4)).astype(np.float32)
    answers = {}
    for host_build, threads in (("portable", 1), ("auto", 1), ("native", 4)):
        with open_oracle(f"tvm-host:{build}", host_build=host_build, threads=threads) as o:
            answers[(host_build, threads)] = o.query(x).view(np.uint32)
            assert o.build_info.endswith("4 threads" if threads == 4 else "1 thread")
            assert o.build_info.startswith("portable C" if host_build == "portable" else ("native", "portable C"))
    ref = answers[("portable", 1)]
    for a in answers.values():
        np.testing.assert_array_equal(a, ref)
    assert len({p.name for p in build.glob("host-none-*")}) == 2  # one portable and one native library folder


def test_unknown_host_build_is_one_clear_error(build):
    with pytest.raises(DivqatError, match="Unknown host build 'fast'.*auto \\| native \\| portable"):
        open_oracle(f"tvm-host:{build}", host_build="fast")
