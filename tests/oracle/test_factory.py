"""Victim spec parsing, the explicit backend registry, and clear errors."""

from __future__ import annotations

import pytest

from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle import backend_kinds, open_oracle, parse_backend_spec, register_backend
from divqat_tvm.oracle.factory import _BACKENDS, BackendSpec


@pytest.fixture
def fake_backends():
    saved = dict(_BACKENDS)
    calls = []
    for kind in ("tvm-host", "qemu", "serial"):
        register_backend(kind, lambda spec, defense, budget: calls.append((spec, defense, budget)) or "oracle")
    yield calls
    _BACKENDS.clear()
    _BACKENDS.update(saved)


def test_torch_is_registered():
    assert {"torch", "tvm-host", "qemu", "serial"} <= set(backend_kinds())


def test_parse_forms(fake_backends):
    assert parse_backend_spec("torch:runs/v.pt") == BackendSpec("torch", "runs/v.pt")
    assert parse_backend_spec("tvm-host:build/m") == BackendSpec("tvm-host", "build/m")
    assert parse_backend_spec("qemu:build/m") == BackendSpec("qemu", "build/m")
    assert parse_backend_spec("qemu:build/m@mps2-an386") == BackendSpec("qemu", "build/m", board="mps2-an386")
    assert parse_backend_spec("serial:/dev/ttyACM0@build/m") == BackendSpec("serial", "build/m", port="/dev/ttyACM0")
    assert parse_backend_spec("serial:COM3@C:/b/m") == BackendSpec("serial", "C:/b/m", port="COM3")


def test_open_passes_parsed_defense_and_budget(fake_backends):
    from divqat_tvm.defenses import ReverseSigmoid

    assert open_oracle("qemu:b@mps2-an500", defense="rs:beta=0.5", budget=7) == "oracle"
    spec, defense, budget = fake_backends[-1]
    assert spec.board == "mps2-an500" and defense == ReverseSigmoid(0.5, 0.1) and budget == 7
    open_oracle("tvm-host:b")
    assert fake_backends[-1][1] is None


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("nope:x", "Unknown victim backend 'nope'.*known backends are .*torch"),
        ("runs/v.pt", "no backend prefix"),
        ("torch:", "names no path"),
        ("qemu:build@", "names no board"),
        ("serial:build", "port and a build directory"),
    ],
)
def test_bad_specs(fake_backends, spec, msg):
    with pytest.raises(DivqatError, match=msg):
        open_oracle(spec)


def test_bad_defense_spec(fake_backends):
    with pytest.raises(DivqatError, match="Unknown defence"):
        open_oracle("tvm-host:b", defense="foo:beta=1")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(DivqatError):
        open_oracle(f"torch:{tmp_path / 'missing.pt'}")
