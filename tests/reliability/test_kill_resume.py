"""Kill and resume, nothing left behind (issue #19): during a DFME attack on the firmware under QEMU, QEMU is
SIGKILLed ten times and the whole attack process three times. Rerunning the same command finishes with results
identical to an uninterrupted run (the same queries and answers in the same order: none lost, none doubled; the
same student), and no emulator is left running: emulators die with their owner (PR_SET_PDEATHSIG) and the pid-file
registry reaps what a killed run left (device/lifetime.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from divqat_tvm.attacks import QueryLog
from divqat_tvm.device import lifetime

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dense"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.emulator, pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")]

#: the result keys that describe one process's run, not the attack's outcome
VOLATILE = {"wall_time_s", "queries_sent_this_run", "queries_replayed_from_log", "log"}


def _command(build: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from divqat_tvm.cli import main; sys.exit(main(sys.argv[1:]))",
        "attack",
        "--attack",
        "dfme",
        "--victim",
        f"qemu:{build}",
        "--budget",
        str(112 * 36),
        "--batch-size",
        "16",
        "--student",
        "tinycnn",
        "--test-set",
        "synthetic:1x4x4:4",
        "--ngf",
        "4",
        "--latent-dim",
        "8",
        "--epsilon",
        "1",
        "--out",
        str(out),
    ]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)


def _emulators_of(build: Path) -> list[int]:
    """Every qemu-system-arm process running firmware of this build directory (registered or not)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if "qemu-system-arm" in cmd and str(build) in cmd and state not in ("Z", "X"):
                pids.append(int(d.name))
    return pids


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _size(p: Path) -> int:
    return p.stat().st_size if p.exists() else 0


def test_qemu_and_process_kills_resume_to_identical_results(tmp_path):
    build = tmp_path / "tiny_dense"
    shutil.copytree(FIXTURE, build)
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), DIVQAT_EMULATOR_REGISTRY=str(tmp_path / "registry"), OMP_NUM_THREADS="1"
    )
    os.environ[lifetime.REGISTRY_ENV] = env["DIVQAT_EMULATOR_REGISTRY"]
    log = tmp_path / "runs.log"
    try:
        ref = tmp_path / "ref"
        assert subprocess.run(_command(build, ref), env=env, cwd=ROOT, capture_output=True).returncode == 0

        out = tmp_path / "killed"
        qlog = out / "queries.qlog"
        plan = list("qqqPqqqPqqPqq")  # 10 emulator kills, 3 process kills
        kills = {"q": 0, "P": 0}
        proc = _start(_command(build, out), env, log)
        runs = 1
        for ev in plan:
            mark = _size(qlog)
            # the attack is under way: new answers have reached the log since the last kill
            _wait(
                lambda m=mark, pr=proc: _size(qlog) > m + 2048 and pr.poll() is None, 240, f"progress before kill {ev}"
            )
            if ev == "q":
                _wait(lambda pr=proc: lifetime.running(owner=pr.pid), 60, "a running emulator")
                pid = lifetime.running(owner=proc.pid)[0]
                os.kill(pid, signal.SIGKILL)
                _wait(lambda p=pid: lifetime.start_time(p) is None, 10, "the emulator to die")
            else:
                emus = lifetime.running(owner=proc.pid)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                # PR_SET_PDEATHSIG: its emulators die with it, at once
                _wait(lambda es=emus: all(lifetime.start_time(p) is None for p in es), 10, "orphaned emulators to die")
                assert _emulators_of(build) == []
                proc = _start(_command(build, out), env, log)  # the same command resumes
                runs += 1
            kills[ev] += 1
        assert proc.wait(600) == 0, log.read_text()[-3000:]
        assert kills == {"q": 10, "P": 3} and runs == 4

        a = json.loads((ref / "result.json").read_text())
        b = json.loads((out / "result.json").read_text())
        assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
        assert b["queries_used"] == a["queries_used"] == b["queries_sent_this_run"] + b["queries_replayed_from_log"]
        assert b["queries_replayed_from_log"] > 0
        xa, pa = QueryLog.read(ref / "queries.qlog").arrays()
        xb, pb = QueryLog.read(qlog).arrays()
        assert len(xb) == len(xa) == a["queries_used"]  # no query lost, none doubled
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(pa.view(np.uint32), pb.view(np.uint32))
        sa, sb = torch.load(ref / "student.pt"), torch.load(out / "student.pt")
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        # nothing left behind: no emulator of this build, no registry entry, no scratch directory
        _wait(lambda: _emulators_of(build) == [], 10, "no emulator left")
        lifetime.reap_stale()
        assert lifetime.entries() == []
    finally:
        os.environ.pop(lifetime.REGISTRY_ENV, None)
        for pid in _emulators_of(build):
            os.kill(pid, signal.SIGKILL)
