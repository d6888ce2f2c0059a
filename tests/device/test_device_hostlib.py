"""The host twin (model C + the firmware's post-processing C) against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_reference

from divqat_tvm.defenses import DCP, ReverseSigmoid
from divqat_tvm.defenses.spec import DefenseSpec, from_postprocessor
from divqat_tvm.defenses.spec import parse_defense_spec as parse_defense
from divqat_tvm.device.host_twin import HostTwin
from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle, quantize_input

torch.set_num_threads(1)


def test_host_twin_int8_matches_numpy_reference(tiny_build):
    twin = HostTwin(tiny_build)
    x = np.random.default_rng(0).integers(-128, 128, (500, 16)).astype(np.int8)
    logits, probs = twin.infer(x)
    np.testing.assert_array_equal(logits, tiny_reference(x))
    assert len(np.unique(logits.argmax(1))) >= 3  # the fixture is not degenerate


def test_softmax_matches_float64_reference(tiny_build):
    twin = HostTwin(tiny_build)
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = rng.integers(-128, 128, 10).astype(np.int8)
        scale, zp = float(np.float32(rng.uniform(0.01, 0.3))), int(rng.integers(-20, 20))
        p = twin.postprocess(q, scale, zp)
        ref = torch.softmax(torch.tensor((q.astype(np.float64) - zp) * scale), 0).numpy()
        np.testing.assert_allclose(p, ref, rtol=2e-6, atol=1e-7)
        assert abs(float(p.sum(dtype=np.float64)) - 1.0) < 1e-5


@pytest.mark.parametrize(
    "spec",
    [
        "rs:beta=0.5,gamma=0.1",
        "rs:beta=1.28,gamma=0.1",
        "dcp:beta=0.5,gamma=0.1,nu=1000",
        "dcp:beta=0.9,gamma=0.1,nu=1000",
    ],
)
def test_c_defences_match_python_twins(tiny_build, spec):
    twin, plain = HostTwin(tiny_build, spec), HostTwin(tiny_build)
    py = {"rs": ReverseSigmoid, "dcp": DCP}[spec.split(":")[0]](
        **{k: float(v) for k, v in (kv.split("=") for kv in spec.split(":")[1].split(","))}
    )
    rng = np.random.default_rng(2)
    changed = 0
    for _ in range(200):
        q = rng.integers(-128, 128, 10).astype(np.int8)
        p0 = plain.postprocess(q, 0.05, 0)
        p1 = twin.postprocess(q, 0.05, 0)
        np.testing.assert_allclose(p1, py(p0.astype(np.float64)), rtol=1e-4, atol=2e-6)
        changed += not np.array_equal(p0, p1)
    assert changed > 0


def test_defense_spec_parsing_and_c_literals():
    d = parse_defense("dcp:beta=0.5,gamma=0.1,nu=1000")
    assert d == DefenseSpec("dcp", 0.5, 0.1, 1000.0) and d.tag == "dcp-b0.5-g0.1-n1000"
    assert parse_defense(d.spec()) == d
    assert "-DDQ_BETA=0.0f" in parse_defense(None).c_defines()
    assert from_postprocessor(ReverseSigmoid(0.25, 0.1)) == DefenseSpec("rs", 0.25, 0.1)
    for bad in ["xx:beta=1", "rs:gamma=0.1", "rs:beta=abc", "rs:beta=1,nu=3", "rs:beta=-1"]:
        with pytest.raises(DivqatError):
            parse_defense(bad)


def test_tvm_host_oracle_counts_and_quantizes(tiny_build):
    o = TvmHostOracle(tiny_build, budget=30)
    x = np.random.default_rng(3).uniform(-1, 1, (20, 1, 4, 4)).astype(np.float32)
    p = o.query(x)
    assert p.shape == (20, 4) and o.queries == 20
    np.testing.assert_array_equal(o.last_logits, tiny_reference(quantize_input(x, o.manifest)))
    with pytest.raises(DivqatError):
        o.query(x)  # 40 > budget 30
