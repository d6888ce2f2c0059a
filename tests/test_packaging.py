"""The wheel is a real package: installed into a fresh virtualenv (not editable, outside the repository), it
lists the targets, compiles a model, builds its firmware and runs it under QEMU — so `firmware/` and `targets/`
travel inside it as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KWS = ROOT.parent / "shared" / "models" / "kws_ref_model.tflite"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.emulator,
    pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm", needs_files=(KWS,)),
]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIVQAT_") and k != "PYTHONPATH"}  # only the wheel
    env["COLUMNS"] = "200"
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        tmp_path,
        env,
    )
    (wheel,) = wheels.glob("divqat_tvm-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip()
    )
    # the dependencies (torch, TVM, ...) come from this environment's site-packages, appended after the venv's own
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], tmp_path, env)

    work = tmp_path / "work"
    work.mkdir()
    where = _run(
        [
            str(py),
            "-c",
            "import divqat_tvm, divqat_tvm.resources as r; print(divqat_tvm.__file__); "
            "print(r.data_dir('firmware')); print(r.data_dir('targets'))",
        ],
        work,
        env,
    ).split()
    assert all(p.startswith(str(venv)) for p in where), where  # the wheel's package and data, not the repository's

    cli = str(venv / "bin" / "divqat-tvm")
    assert "mps2-an500" in _run([cli, "targets"], work, env)
    _run([cli, "compile", str(KWS), "--target", "mps2-an500", "--out", "kws", "--prefix", "kws"], work, env)
    _run([cli, "build", "kws", "--board", "mps2-an500"], work, env)
    out = _run([cli, "emulate", "kws", "--board", "mps2-an500", "--random", "1"], work, env)
    assert "instructions (emulated) per inference" in out
