"""No emulator outlives its owner, and none from a crashed run is left behind.

Three mechanisms, each covering what the others cannot:
- `PR_SET_PDEATHSIG` (Linux): the kernel sends QEMU SIGKILL when the thread that started it ends. Every emulator
  is therefore started from one long-lived spawner thread, so a short-lived worker thread (a thread pool's) does
  not take its emulators with it; SIGKILL of the owning process ends that thread, and the kernel ends QEMU.
- `atexit` in `emulator.py`: a normal interpreter exit stops every live runner.
- A registry of pid files (`DIVQAT_EMULATOR_REGISTRY`, default `$TMPDIR/divqat-emulators-<uid>/`): one JSON file
  per running emulator naming it and its owner (pid and start time, so a reused pid is not mistaken for it) and
  its scratch directory. Starting an emulator first reaps the entries whose owner is gone: a still-running
  emulator is killed, its scratch files (socket, 16 MB shared-RAM file) removed.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
REGISTRY_ENV = "DIVQAT_EMULATOR_REGISTRY"

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux: the registry and atexit still apply
    _LIBC = None


def registry_dir() -> Path:
    """Where the pid files of running emulators live."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"divqat-emulators-{os.getuid()}"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) if fields[0] not in ("Z", "X") else None


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


def _die_with_parent(parent: int) -> None:
    """preexec_fn: SIGKILL when the spawning thread ends; exit at once if the parent is already gone."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class _Spawner:
    """One daemon thread that starts every emulator: PDEATHSIG follows the spawning thread, so that thread must
    live as long as the process."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            cmd, kw, fut = self._q.get()
            parent = os.getpid()

            def preexec(parent: int = parent) -> None:
                _die_with_parent(parent)

            try:
                proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, preexec_fn=preexec, **kw)
                fut.set_result(proc)
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)

    def popen(self, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="divqat-emulator-spawner", daemon=True)
                self._thread.start()
        fut: Future[subprocess.Popen[bytes]] = Future()
        self._q.put((cmd, kw, fut))
        return fut.result()


_SPAWNER = _Spawner()


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen that dies with this process (see the module docstring)."""
    return _SPAWNER.popen(cmd, **kw)


def register(proc: subprocess.Popen[bytes], scratch: str | None, what: str) -> Path | None:
    """Record a running emulator; returns its pid file (None if the registry cannot be written)."""
    d = registry_dir()
    entry = {
        "pid": proc.pid,
        "start": start_time(proc.pid),
        "owner": os.getpid(),
        "owner_start": start_time(os.getpid()),
        "scratch": scratch,
        "what": what,
    }
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{proc.pid}.json"
        tmp = d / f".{proc.pid}.tmp"
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)
        return path
    except OSError:
        return None


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def entries() -> list[dict[str, Any]]:
    """The registry's entries (unreadable ones skipped)."""
    out: list[dict[str, Any]] = []
    d = registry_dir()
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            e = json.loads(p.read_text())
            e["_path"] = str(p)
            out.append(e)
        except (OSError, ValueError):
            continue
    return out


def running(owner: int | None = None) -> list[int]:
    """Pids of registered emulators that are still running (of one owner, or all)."""
    return [
        int(e["pid"])
        for e in entries()
        if _alive(int(e["pid"]), e.get("start")) and (owner is None or int(e["owner"]) == owner)
    ]


def reap_stale() -> list[int]:
    """Kill the emulators whose owner is gone, remove their scratch files and pid files; returns the pids killed."""
    killed = []
    for e in entries():
        if _alive(int(e["owner"]), e.get("owner_start")):
            continue
        pid = int(e["pid"])
        if _alive(pid, e.get("start")):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        if e.get("scratch") and Path(e["scratch"]).name.startswith("dq-qemu-"):
            shutil.rmtree(e["scratch"], ignore_errors=True)
        unregister(Path(e["_path"]))
    return killed
