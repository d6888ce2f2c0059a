"""The runner resumes cell by cell: a killed run never recomputes a finished task; artefacts are built once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from divqat_tvm.experiment.cache import artefact_dir, ensure
from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.grid import expand
from divqat_tvm.experiment.scheduler import result_path, run_tasks

CONFIG = {
    "name": "t",
    "seeds": [0, 1, 2],
    "attacks": ["knockoff", "dfme"],
    "victims": [{"method": "qat"}, {"method": "divqat", "alpha": [1, 2]}],
}

# A cheap task function: logs each call, sleeps in attack cells (so a run can be killed mid-grid), reads
# its dependency's result like the real pipeline does, and fails on demand.
FAKE = textwrap.dedent("""
    import os, time
    from pathlib import Path

    def run(task, ctx):
        with open(os.environ["FAKE_LOG"], "a") as f:
            f.write(task.key + "\\n")
        for stage, tid in task.deps:
            ctx.dep(stage, tid)
        if task.key in os.environ.get("FAKE_FAIL", "").split(","):
            raise RuntimeError("asked to fail")
        if task.stage == "attack":
            ctx.report(0.5, "half way")
            time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        return {"stage": task.stage, "id": task.id, "pid": os.getpid()}
""")

DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from divqat_tvm.experiment.config import validate_experiment
    from divqat_tvm.experiment.grid import expand
    from divqat_tvm.experiment.scheduler import run_tasks
    import json
    exp = validate_experiment(json.loads(sys.argv[3]), "t.toml")
    s = run_tasks(expand(exp), sys.argv[2], "fake_tasks:run", workers=int(sys.argv[4]))
    sys.exit(0 if s.ok else 1)
""")


@pytest.fixture()
def fake(tmp_path: Path) -> Path:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "fake_tasks.py").write_text(FAKE)
    sys.path.insert(0, str(mod))
    yield mod
    sys.path.remove(str(mod))
    sys.modules.pop("fake_tasks", None)


def _calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _run(fake: Path, out: Path, log: Path, workers: int, sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_SLEEP": str(sleep)}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(fake), str(out), json.dumps(CONFIG), str(workers)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_experiment_resumes_without_recomputing_finished_cells(fake: Path, tmp_path: Path, workers: int) -> None:
    out = tmp_path / "run"
    tasks = expand(validate_experiment(CONFIG, "t.toml"))
    cells = [t for t in tasks if t.stage == "attack"]
    p = _run(fake, out, tmp_path / "log1", workers, sleep=0.4)
    deadline = time.time() + 60
    while len(list((out / "attack").glob("*.json"))) < 4 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    finished = {
        t.key: result_path(out, t.stage, t.id).stat().st_mtime_ns
        for t in tasks
        if result_path(out, t.stage, t.id).exists()
    }
    done_cells = [c for c in cells if c.key in finished]
    assert 4 <= len(done_cells) < len(cells), "the kill should land mid-grid"

    p2 = _run(fake, out, tmp_path / "log2", workers)
    assert p2.wait(timeout=120) == 0
    second = _calls(tmp_path / "log2")
    assert sorted(second) == sorted(t.key for t in tasks if t.key not in finished)  # each unfinished task ran once
    for key, mtime in finished.items():
        stage, tid = key.split("/")
        assert result_path(out, stage, tid).stat().st_mtime_ns == mtime  # finished files untouched
    assert all(result_path(out, t.stage, t.id).exists() for t in tasks)

    p3 = _run(fake, out, tmp_path / "log3", workers)
    assert p3.wait(timeout=60) == 0 and _calls(tmp_path / "log3") == []  # a complete run does nothing


def test_failed_task_is_recorded_dependents_skipped_and_retried(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    tasks = expand(validate_experiment(CONFIG, "t.toml"))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("FAKE_FAIL", "victim/mnist5k__divqat-a1")
    s = run_tasks(tasks, out, "fake_tasks:run", workers=1)
    assert list(s.failed) == ["victim/mnist5k__divqat-a1"]
    assert len(s.skipped) == 2 * 3 and all("divqat-a1__" in k for k in s.skipped)
    err = json.loads((out / "victim" / "mnist5k__divqat-a1.error.json").read_text())
    assert "asked to fail" in err["error"] and "Traceback" in err["traceback"]
    monkeypatch.setenv("FAKE_FAIL", "")
    (tmp_path / "log").unlink()
    s2 = run_tasks(tasks, out, "fake_tasks:run", workers=1)
    assert s2.ok and sorted(s2.ran) == sorted(["victim/mnist5k__divqat-a1", *s.skipped])
    assert not (out / "victim" / "mnist5k__divqat-a1.error.json").exists()
    rec = json.loads(result_path(out, "attack", "mnist5k__qat__dfme__s2").read_text())
    assert rec["result"]["id"] == "mnist5k__qat__dfme__s2" and rec["task"]["params"]["seed"] == 2


def test_artefacts_are_built_once_and_a_half_built_one_is_redone(tmp_path: Path) -> None:
    calls = []

    def build(d: Path) -> dict:
        calls.append(d)
        (d / "weights.bin").write_bytes(b"w")
        return {"file": "weights.bin"}

    params = {"arch": "tinycnn", "epochs": 3}
    d1, info = ensure(tmp_path, "teacher", "mnist5k", params, build)
    d2, info2 = ensure(tmp_path, "teacher", "mnist5k", dict(reversed(params.items())), build)
    assert d1 == d2 and info == info2 == {"file": "weights.bin"} and len(calls) == 1
    assert artefact_dir(tmp_path, "teacher", "mnist5k", {**params, "epochs": 4}) != d1
    half = artefact_dir(tmp_path, "teacher", "other", params)
    half.mkdir(parents=True)
    (half / "junk").write_text("partial")  # a build killed before artefact.json
    d3, _ = ensure(tmp_path, "teacher", "other", params, build)
    assert d3 == half and not (half / "junk").exists() and len(calls) == 2


def test_results_of_other_parameters_are_refused_not_reused(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from divqat_tvm.errors import DivqatError

    out = tmp_path / "run"
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    assert run_tasks(expand(validate_experiment(CONFIG, "t.toml")), out, "fake_tasks:run").ok
    other = {**CONFIG, "overrides": {"attacks": {"dfme": {"budget": 999}}}}
    with pytest.raises(DivqatError, match=r"attack/mnist5k__qat__dfme__s0.* computed with other parameters"):
        run_tasks(expand(validate_experiment(other, "t.toml")), out, "fake_tasks:run")
    more_seeds = {**CONFIG, "seeds": [0, 1, 2, 3]}  # growing the grid is a resume, not a conflict
    s = run_tasks(expand(validate_experiment(more_seeds, "t.toml")), out, "fake_tasks:run")
    assert s.ok and sorted(s.ran) == sorted(
        f"attack/mnist5k__{v}__{a}__s3" for v in ("qat", "divqat-a1", "divqat-a2") for a in ("knockoff", "dfme")
    )


def test_each_task_records_the_float_numerics_it_ran_under(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed fixes the bits only within one CPU vector ISA, so every record says which one computed it."""
    import torch  # loaded, as in every real task

    from divqat_tvm.experiment.scheduler import execute
    from divqat_tvm.train.determinism import float_numerics

    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    task = expand(validate_experiment(CONFIG, "t.toml"))[0]
    out = tmp_path / "run"
    assert execute(task, "fake_tasks:run", str(out), str(tmp_path / "cache"), 1) == (task.key, None)
    rec = json.loads(result_path(out, task.stage, task.id).read_text())
    assert rec["numerics"] == float_numerics()
    assert rec["numerics"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["numerics"]["torch"] == torch.__version__
