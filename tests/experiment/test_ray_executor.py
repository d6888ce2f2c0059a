"""`--executor ray`: a grid as a DAG of Ray tasks on a local cluster (127.0.0.1, started and stopped here).

- the real pipeline on a tiny torch grid gives the same attack results through Ray as through the local executor;
- a worker killed mid-cell is retried by Ray and the report does not change;
- a driver killed mid-grid resumes with the same command and recomputes no finished cell;
- without Ray, `--executor ray` is a one-line error (exit 2) naming the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray  # noqa: F401  (the dev extra installs the [cluster] extra: a missing Ray fails, not skips)

from divqat_tvm.experiment.config import validate_experiment
from divqat_tvm.experiment.grid import expand
from divqat_tvm.experiment.scheduler import result_path

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny-ray",
    "seeds": [0, 1],
    "attacks": ["knockoff"],
    "victims": [{"method": "qat"}],
    "overrides": {
        "teacher": {"epochs": 1},
        "quantize": {"epochs": 1, "calibration_batches": 4},
        "attacks": {"knockoff": {"budget": 200, "query_batch": 50, "fit": {"epochs": 2}}},
    },
}

# Task functions for the cluster's workers (the cluster's PYTHONPATH holds their folder).
MODULES = {
    # the real pipeline; the first attempt of cell s0 writes its pid and waits to be killed
    "ray_kill_tasks.py": """
        import os, time
        from pathlib import Path
        from divqat_tvm.experiment.tasks import run_task

        def run(task, ctx):
            flag = Path(os.environ["RAY_TEST_DIR"]) / "kill" / (task.id + ".pid")
            if task.key == "attack/mnist5k__qat__knockoff__s0":
                with open(flag.with_suffix(".attempts"), "a") as f:
                    f.write(f"{os.getpid()}\\n")
                if not flag.exists():
                    flag.write_text(str(os.getpid()))
                    time.sleep(120)  # killed here by the test
            return run_task(task, ctx)
    """,
    # cheap: logs each call to the log the test names in RAY_TEST_DIR/current, sleeps in attack cells
    "ray_fake_tasks.py": """
        import os, time
        from pathlib import Path

        def run(task, ctx):
            d = Path(os.environ["RAY_TEST_DIR"])
            with open(d / (d / "current").read_text().strip(), "a") as f:
                f.write(task.key + "\\n")
            for stage, tid in task.deps:
                ctx.dep(stage, tid)
            if task.stage == "victim":
                p = ctx.out_dir / "victim" / (task.id + ".top1.npy")
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(task.id.encode())
                return {"top1": str(p)}
            if task.stage == "attack":
                assert Path(ctx.dep(*task.deps[0])["top1"]).read_bytes() == task.deps[0][1].encode()
                time.sleep(1.0)
            return {"stage": task.stage, "id": task.id}
    """,
}

DRIVER = textwrap.dedent("""
    import json, sys
    from rich.console import Console
    from divqat_tvm.experiment.config import validate_experiment
    from divqat_tvm.experiment.run import run_experiment
    from divqat_tvm.experiment.grid import expand
    from divqat_tvm.experiment.ray_executor import run_tasks_ray
    cfg, out, fn, address = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    quiet = Console(file=open("/dev/null", "w"))
    exp = validate_experiment(cfg, "t.toml")
    if fn != "ray_fake_tasks:run":  # the real pipeline: the whole experiment, report included
        s, _ = run_experiment(exp, out, workers=1, fn_spec=fn, executor="ray", address=address, console=quiet)
    else:  # fake tasks: the runner alone (a report needs real results)
        s = run_tasks_ray(expand(exp), out, fn, address=address, console=quiet)
    print(json.dumps({"ran": s.ran, "cached": s.cached, "failed": s.failed}))
    sys.exit(0 if s.ok else 1)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    """A one-node Ray cluster on 127.0.0.1 (2 CPUs, 2 emulator slots); killed (its process group) at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="dqray", dir="/tmp"))  # short: Ray's unix sockets live under it
    mods = tmp / "mods"
    mods.mkdir()
    for name, src in MODULES.items():
        (mods / name).write_text(textwrap.dedent(src))
    (tmp / "kill").mkdir()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_TEST_DIR": str(tmp),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(mods)]),
        "OMP_NUM_THREADS": "1",
    }
    port = _free_port()
    log = open(tmp / "ray-start.log", "wb")
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            '--resources={"emulator": 2}',
            "--include-dashboard=false",
            f"--temp-dir={tmp / 'ray'}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while b"Ray runtime started" not in (tmp / "ray-start.log").read_bytes():
            assert head.poll() is None and time.time() < deadline, (tmp / "ray-start.log").read_text()[-2000:]
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "env": env, "dir": tmp}
    finally:
        try:
            os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started share its group
        except ProcessLookupError:
            pass
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(cluster: dict, cfg: dict, out: Path, fn: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(cfg), str(out), fn, cluster["address"]],
        env=cluster["env"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _cells(out: Path) -> dict[str, dict]:
    """Attack results without timings."""
    cells = {}
    for p in sorted((out / "attack").glob("*.json")):
        if p.name.endswith(".error.json"):
            continue
        r = json.loads(p.read_text())["result"]
        a = {k: v for k, v in r["attack_result"].items() if "time" not in k and k != "log"}
        cells[p.stem] = {**{k: v for k, v in r.items() if k not in ("wall_s", "attack_result")}, "attack_result": a}
    return _unrooted(cells, out)


def _unrooted(obj, out: Path):
    """`obj` with the run directory's path replaced by "RUN" (the two runs live in different folders)."""
    text = json.dumps(obj)
    for root in {str(out.resolve()), str(out)}:
        text = text.replace(root, "RUN")
    return json.loads(text)


def _flat(o, prefix=""):
    if isinstance(o, dict):
        return {k2: v2 for k, v in o.items() for k2, v2 in _flat(v, f"{prefix}{k}.").items()}
    return {prefix: o}


def _diff(a: dict, b: dict) -> list:
    fa, fb = _flat(a), _flat(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _report(out: Path) -> dict:
    from divqat_tvm.report.render import render_report

    rep = json.loads(render_report(out)["json"].read_text())

    def strip(o):
        if isinstance(o, dict):
            return {
                k: strip(v)
                for k, v in o.items()
                if not any(w in k for w in ("wall", "time", "utc", "run_dir", "generated", "span"))
            }
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return _unrooted(strip(rep), out)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny grid through the local executor (the reference)."""
    import torch
    from rich.console import Console

    from divqat_tvm.experiment.run import run_experiment

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("local") / "run"
    s, _ = run_experiment(
        validate_experiment(TINY, "t.toml"), out, workers=1, console=Console(file=open("/dev/null", "w"))
    )
    assert s.ok, s.failed
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_executor_gives_the_local_executors_attack_results(cluster: dict, local_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = _drive(cluster, TINY, out, "divqat_tvm.experiment.tasks:run_task")
    stdout, stderr = p.communicate(timeout=800)
    assert p.returncode == 0, (stdout.decode()[-3000:], stderr.decode()[-3000:])
    ray_cells, local_cells = _cells(out), _cells(local_run)
    assert len(ray_cells) == 2 and not _diff(ray_cells, local_cells), _diff(ray_cells, local_cells)
    import torch

    for cell in ray_cells:  # the driver wrote the workers' files: the same stolen students, bit for bit
        a = torch.load(out / "work" / "attack" / cell / "student.pt")
        b = torch.load(local_run / "work" / "attack" / cell / "student.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rec = json.loads(result_path(out, "attack", "mnist5k__qat__knockoff__s0").read_text())
    assert rec["executor"]["kind"] == "ray"
    assert _report(out) == _report(local_run)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_worker_killed_mid_cell_is_retried_and_the_report_is_unchanged(
    cluster: dict, local_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    p = _drive(cluster, TINY, out, "ray_kill_tasks:run")
    pid_file = cluster["dir"] / "kill" / "mnist5k__qat__knockoff__s0.pid"
    deadline = time.time() + 600
    while not pid_file.exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()[1].decode()[-3000:]
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the Ray worker running that cell, mid-cell
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, (stdout.decode()[-3000:], stderr.decode()[-3000:])
    attempts = pid_file.with_suffix(".attempts").read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # Ray re-ran it in another worker process
    assert _cells(out) == _cells(local_run)
    assert _report(out) == _report(local_run)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_driver_resumes_without_recomputing_finished_cells(cluster: dict, tmp_path: Path) -> None:
    cfg = {
        "name": "t",
        "seeds": [0, 1, 2],
        "attacks": ["knockoff", "dfme"],
        "victims": [{"method": "qat"}, {"method": "divqat", "alpha": 1}],
    }
    tasks = expand(validate_experiment(cfg, "t.toml"))
    logs = cluster["dir"]
    out = tmp_path / "run"
    (logs / "current").write_text("drv1.log")
    p = _drive(cluster, cfg, out, "ray_fake_tasks:run")
    deadline = time.time() + 300
    while len(list((out / "attack").glob("*.json"))) < 3:
        assert p.poll() is None and time.time() < deadline, p.communicate()[1].decode()[-3000:]
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    finished = {
        t.key: result_path(out, t.stage, t.id).stat().st_mtime_ns
        for t in tasks
        if result_path(out, t.stage, t.id).exists()
    }
    assert 3 <= sum(k.startswith("attack/") for k in finished) < 12, "the kill should land mid-grid"
    time.sleep(3)  # Ray stops the dead driver's tasks

    (logs / "current").write_text("drv2.log")
    p2 = _drive(cluster, cfg, out, "ray_fake_tasks:run")
    stdout, stderr = p2.communicate(timeout=300)
    assert p2.returncode == 0, (stdout.decode()[-3000:], stderr.decode()[-3000:])
    summary = json.loads(stdout.decode().splitlines()[-1])
    second = (logs / "drv2.log").read_text().split()
    assert not set(second) & set(finished)  # nothing finished ran again
    assert sorted(summary["ran"]) == sorted(t.key for t in tasks if t.key not in finished)
    assert sorted(summary["cached"]) == sorted(finished)
    for key, mtime in finished.items():
        stage, tid = key.split("/")
        assert result_path(out, stage, tid).stat().st_mtime_ns == mtime  # finished files untouched
    assert all(result_path(out, t.stage, t.id).exists() for t in tasks)
    rec = json.loads(result_path(out, "victim", "mnist5k__qat").read_text())
    assert rec["result"]["top1"] == str(
        out.resolve() / "victim" / "mnist5k__qat.top1.npy"
    )  # written by the driver, relocated

    (logs / "current").write_text("drv3.log")
    p3 = _drive(cluster, cfg, out, "ray_fake_tasks:run")
    assert (
        p3.wait(timeout=120) == 0 and not (logs / "drv3.log").exists()
    )  # a complete run does nothing, not even start Ray
