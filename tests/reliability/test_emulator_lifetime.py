"""Emulators never outlive their owner (device/lifetime.py): started from a long-lived spawner thread with
PR_SET_PDEATHSIG, so a short-lived worker thread can start one and end, while SIGKILL of the owning process ends
it at once; and the pid-file registry reaps what an owner that is gone left running (and its scratch files)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from divqat_tvm.device import lifetime


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(lifetime.REGISTRY_ENV, str(tmp_path / "registry"))
    return tmp_path / "registry"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if lifetime.start_time(pid) is None:
            return True
        time.sleep(0.05)
    return False


def test_a_child_survives_its_worker_thread_and_dies_with_its_process(registry, tmp_path):
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from divqat_tvm.device import lifetime
        box = []
        t = threading.Thread(target=lambda: box.append(lifetime.spawn(["sleep", "300"])))
        t.start(); t.join()  # the thread that asked for it has ended
        lifetime.register(box[0], None, "sleep")
        print(box[0].pid, flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    time.sleep(0.5)
    assert lifetime.start_time(child) is not None  # alive after its worker thread ended
    assert lifetime.running(owner=owner.pid) == [child]
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _gone(child)  # PR_SET_PDEATHSIG
    lifetime.reap_stale()
    assert lifetime.entries() == []


def test_registry_reaps_the_emulators_of_a_dead_owner(registry):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)  # no death signal: only the registry helps
    scratch = tempfile.mkdtemp(prefix="dq-qemu-")
    Path(scratch, "shm.bin").write_bytes(b"\0" * 1024)
    path = lifetime.register(orphan, scratch, "test")
    assert path is not None
    entry = path.read_text().replace(f'"owner": {os.getpid()}', f'"owner": {dead.pid}')
    path.write_text(entry)
    live = subprocess.Popen(["sleep", "300"])
    lifetime.register(live, None, "ours")  # owned by this (running) process: left alone
    try:
        assert lifetime.reap_stale() == [orphan.pid]
        orphan.wait(10)
        assert not Path(scratch).exists()
        assert [int(e["pid"]) for e in lifetime.entries()] == [live.pid]
        assert lifetime.start_time(live.pid) is not None
    finally:
        live.kill()
        live.wait()
        orphan.kill()
