"""The firmware's C defences (firmware/src/postprocess.c, built with the host gcc and loaded through
ctypes) give the same outputs as the Python reference twins within float32 tolerance."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.defenses import DCP, DefenseSpec, ReverseSigmoid

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "firmware" / "src" / "postprocess.c"

pytestmark = pytest.mark.needs_tools("gcc", needs_files=(SRC,))

F32P = ctypes.POINTER(ctypes.c_float)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("pp") / "libpostprocess.so"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-ffp-contract=off",
            *DefenseSpec().c_defines(),  # the generated constants
            f"-I{ROOT / 'firmware' / 'include'}",
            str(SRC),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(so))
    lib.dq_reverse_sigmoid.argtypes = [F32P, ctypes.c_uint32, ctypes.c_float, ctypes.c_float, ctypes.c_float]
    lib.dq_dcp_gate.argtypes = [F32P, ctypes.c_uint32, ctypes.c_float, ctypes.c_float]
    lib.dq_dcp_gate.restype = ctypes.c_float
    lib.dq_softmax_q.argtypes = [ctypes.POINTER(ctypes.c_int8), ctypes.c_uint32, ctypes.c_float, ctypes.c_int32, F32P]
    return lib


def c_rs(lib, p, beta, gamma):
    out = np.ascontiguousarray(p, dtype=np.float32).copy()
    for row in out:
        lib.dq_reverse_sigmoid(row.ctypes.data_as(F32P), len(row), beta, gamma, 1.0)
    return out


def c_dcp(lib, p, beta, gamma, nu):
    out = np.ascontiguousarray(p, dtype=np.float32).copy()
    for row in out:
        gate = lib.dq_dcp_gate(row.ctypes.data_as(F32P), len(row), beta, nu)
        lib.dq_reverse_sigmoid(row.ctypes.data_as(F32P), len(row), beta, gamma, gate)
    return out


def probabilities(n=300, k=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=rng.uniform(0.1, 8, size=(n, 1)), size=(n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    return np.concatenate([p, np.eye(k, dtype=np.float32)[:3], np.full((1, k), 1 / k, np.float32)])


@pytest.mark.parametrize("beta,gamma", [(0.0, 0.1), (0.04, 0.1), (0.32, 0.1), (1.0, 0.1), (1.28, 0.5)])
def test_c_rs_equals_python(lib, beta, gamma):
    p = probabilities()
    np.testing.assert_allclose(c_rs(lib, p, beta, gamma), ReverseSigmoid(beta, gamma)(p), atol=2e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.5])
def test_c_dcp_equals_python(lib, beta):
    p = probabilities(seed=1)
    # Rows with max p within 1e-4 of β sit on the gate's steep edge (slope ν/4 = 250): float32 rounding of
    # max p moves the gate by up to ~1e-5 there; everywhere else the twins agree to float precision.
    y = DCP(beta)(p)
    np.testing.assert_allclose(c_dcp(lib, p, beta, 0.1, 1000.0), y, atol=2e-5)


def test_c_softmax_equals_numpy(lib):
    rng = np.random.default_rng(2)
    q = rng.integers(-128, 128, size=10, dtype=np.int8)
    out = np.zeros(10, np.float32)
    lib.dq_softmax_q(q.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), 10, 0.125, -3, out.ctypes.data_as(F32P))
    logits = (q.astype(np.float64) + 3) * 0.125
    ref = np.exp(logits - logits.max())
    np.testing.assert_allclose(out, ref / ref.sum(), atol=1e-6)
