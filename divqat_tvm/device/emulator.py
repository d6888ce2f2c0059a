"""Running firmware under qemu-system-arm: process, serial link, shared RAM, clean shutdown, errors.

QEMU runs with `-icount shift=0,align=off,sleep=off`: one instruction is one nanosecond of virtual time,
so SysTick (clocked at the board's core clock) counts retired instructions divided by ns-per-tick, the
same on every run. The serial port is a unix-socket chardev with `server=on,wait=on`, so QEMU waits for
us and the boot banner is never lost (never `-nographic`: its monitor multiplexing eats byte 0x01).
Bulk input goes through a memory-backend-file the host mmaps, where the machine's RAM can be backed so.
"""

from __future__ import annotations

import atexit
import mmap
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from divqat_tvm.device import lifetime
from divqat_tvm.device.build import FirmwareBuild
from divqat_tvm.device.protocol import E_STACK, STATUS, DeviceInfo, DeviceLink, InferResult
from divqat_tvm.errors import DeviceError, TargetError

if TYPE_CHECKING:
    from divqat_tvm.device.serial_link import SerialTransport

#: semihosting exit codes of firmware/include/dq_semihost.h
EXIT_CODES = {
    0x43: "HardFault",
    0x44: "MemManage fault",
    0x45: "BusFault",
    0x46: "UsageFault",
    0x47: "unexpected exception",
    134: "CPU lockup (fault without a handler)",
}


_LIVE: weakref.WeakSet[QemuRunner] = weakref.WeakSet()


@atexit.register
def _kill_all() -> None:
    """No emulator outlives the Python process that started it (they run in their own session). SIGKILL of the
    process skips this: PR_SET_PDEATHSIG and the pid-file registry cover that (device/lifetime.py)."""
    for r in list(_LIVE):
        r.kill()


def check_status(res: InferResult, info: DeviceInfo | None) -> None:
    """An INFER answer that is not OK becomes a DeviceError naming the cause and the fix."""
    if res.status == E_STACK:
        size = info.stack_bytes if info else "the"
        raise DeviceError(
            f"the inference used all of the {size}-byte stack region (stack overflow).",
            "Rebuild the firmware with a larger --stack-bytes.",
        )
    if res.status != 0:
        raise DeviceError(
            f"the model returned {res.rc} on the device (status {STATUS.get(res.status, res.status)}).",
            "Rebuild the model and firmware.",
        )


def ns_per_tick(clock_hz: int) -> float:
    """Instructions per SysTick tick under -icount shift=0 (1 ns per instruction)."""
    return 1e9 / clock_hz


class SocketTransport:
    """QEMU's serial port as a connected unix socket."""

    def __init__(self, sock: socket.socket, runner: QemuRunner) -> None:
        self.sock = sock
        self.runner = runner

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise DeviceError(
                f"writing to QEMU's serial port failed ({e}). {self.describe_failure()}".strip(),
                "The emulator stopped; see its exit status above.",
            ) from e

    def read(self, n: int, timeout: float) -> bytes:
        self.sock.settimeout(max(timeout, 1e-3))
        try:
            data = self.sock.recv(n)
        except TimeoutError:
            return b""
        except OSError:
            data = b""
        if not data:  # EOF: QEMU went away
            self.runner.wait_exit(2.0)
            raise DeviceError(
                f"QEMU closed the serial link. {self.describe_failure()}".strip(),
                "The firmware crashed or exited; see the exit status above.",
            )
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def describe_failure(self) -> str:
        return self.runner.describe_failure()


class QemuRunner:
    """One emulator running one firmware image; a context manager.

    Args:
        fw: the firmware build (its board must be a QEMU board).
        shared_ram: pass inputs through a memory-backend-file (if the board has a window) instead of the UART.
        timeout: seconds to wait for any answer (a hang becomes a DeviceError).
        serial: "socket" (default) or "pty" (QEMU prints the pty; for testing the serial backend).
    """

    def __init__(
        self,
        fw: FirmwareBuild,
        shared_ram: bool = True,
        timeout: float = 60.0,
        boot_timeout: float = 20.0,
        serial: str = "socket",
        extra_args: list[str] | None = None,
    ) -> None:
        if not fw.board.is_qemu:
            raise DeviceError(
                f"board '{fw.board.name}' is a real board, not a QEMU machine.",
                "Use the serial backend (serial:PORT@BUILD_DIR) or flash it with `divqat-tvm flash`.",
            )
        if fw.board.qemu is None:
            raise TargetError(
                f"board file for '{fw.board.name}' says kind qemu but has no \"qemu\" section.",
                "See targets/README.md for the fields.",
            )
        self.fw = fw
        self.qemu: dict[str, Any] = fw.board.qemu
        self.shm_window: dict[str, Any] | None = self.qemu.get("shared_ram") if shared_ram else None
        self.timeout = timeout
        self.boot_timeout = boot_timeout
        self.serial = serial
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: DeviceLink | None = None
        self.info: DeviceInfo | None = None
        self.pty: str | None = None
        self._tmp: str | None = None
        self._mm: mmap.mmap | None = None
        self._stderr_path: Path | None = None
        self._pidfile: Path | None = None
        self.exit_code: int | None = None

    # -- process ---------------------------------------------------------------------------------------
    def command(self, sock_path: str, shm_path: str | None) -> list[str]:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise DeviceError(
                "qemu-system-arm was not found on PATH.",
                "Install it: apt-get install --no-install-recommends -y qemu-system-arm (or run scripts/setup.sh).",
            )
        machine = self.qemu["machine"]
        cmd = [
            qemu,
            "-machine",
            machine,
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-icount",
            "shift=0,align=off,sleep=off",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
            str(self.fw.elf),
        ]
        # the machine's UARTs take -serial options in order: serial_index says which one the firmware uses
        cmd += ["-serial", "null"] * int(self.qemu.get("serial_index", 0))
        if self.serial == "pty":
            cmd += ["-serial", "pty"]
        else:
            cmd += ["-chardev", f"socket,id=s0,path={sock_path},server=on,wait=on", "-serial", "chardev:s0"]
        if shm_path is not None:
            m = self._window()["qemu_m"]
            cmd += [
                "-m",
                m,
                "-object",
                f"memory-backend-file,id=shm,size={m},mem-path={shm_path},share=on",
                "-machine",
                "memory-backend=shm",
            ]
        return cmd + self.extra_args

    def start(self) -> DeviceInfo:
        """Start QEMU, connect, wait for the banner, read INFO (checked against the build's manifest)."""
        self._tmp = tempfile.mkdtemp(prefix="dq-qemu-")
        sock_path = os.path.join(self._tmp, "serial.sock")
        shm_path = os.path.join(self._tmp, "shm.bin") if self.shm_window else None
        self._stderr_path = Path(self._tmp) / "stderr.txt"
        cmd = self.command(sock_path, shm_path)
        self._spawn(cmd)
        transport: SerialTransport | SocketTransport
        try:
            if self.serial == "pty":
                from divqat_tvm.device.serial_link import SerialTransport

                self.pty = self._read_pty()
                transport = SerialTransport(self.pty, failure=self.describe_failure)
            else:
                transport = SocketTransport(self._connect(sock_path), self)
            self.link = DeviceLink(transport, timeout=self.timeout)
            if self.serial == "pty":
                self.link.drain(quiet=0.2, limit=2.0)  # QEMU drops output while no one has the pty open
            else:
                self.link.wait_hello(self.boot_timeout)
            self.info = self.link.info()
            if shm_path is not None:
                self._map_shared(shm_path)
        except BaseException:
            self.kill()
            raise
        return self.info

    def launch_pty(self) -> str:
        """Start QEMU with its UART on a pty and return the pty's path, without opening it: a stand-in for a
        board's USB serial port (the serial backend opens it)."""
        self.serial = "pty"
        self._tmp = tempfile.mkdtemp(prefix="dq-qemu-")
        self._stderr_path = Path(self._tmp) / "stderr.txt"
        self._spawn(self.command("", None))
        try:
            self.pty = self._read_pty()
        except BaseException:
            self.kill()
            raise
        return self.pty

    def _spawn(self, cmd: list[str]) -> None:
        """Start QEMU so that it cannot outlive this process, and record it in the emulator registry (after reaping
        the emulators a crashed run left behind)."""
        lifetime.reap_stale()
        _LIVE.add(self)
        assert self._stderr_path is not None
        with open(self._stderr_path, "wb") as err:
            self.proc = lifetime.spawn(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.serial == "pty" else subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self._pidfile = lifetime.register(self.proc, self._tmp, str(self.fw.elf))

    def _read_pty(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if "redirected to" in line:
                return line.split("redirected to", 1)[1].split()[0]
            if not line and self.proc.poll() is not None:
                break
        raise DeviceError(
            f"QEMU did not report its pty. {self.describe_failure()}".strip(), "Check the QEMU installation."
        )

    def _connect(self, path: str) -> socket.socket:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            if os.path.exists(path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    return s
                except OSError:
                    s.close()
            time.sleep(0.01)
        raise DeviceError(
            f"could not connect to QEMU's serial socket. {self.describe_failure()}".strip(),
            "Check that qemu-system-arm supports the machine and the firmware image exists.",
        )

    def _map_shared(self, path: str) -> None:
        window = int(self._window()["length"])
        fd = os.open(path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, window, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def _window(self) -> dict[str, Any]:
        """The board's shared-RAM window, for a runner that uses one."""
        if self.shm_window is None:
            raise DeviceError(
                f"this emulator of '{self.fw.board.name}' uses no shared-RAM window.",
                "Start it with shared_ram=True on a board whose qemu section has a shared_ram window.",
            )
        return self.shm_window

    def connection(self) -> tuple[DeviceLink, DeviceInfo]:
        """The open link and the firmware's INFO.

        Raises:
            DeviceError: the emulator is not running (start it, or use the runner as a context manager).
        """
        if self.link is None or self.info is None:
            raise DeviceError("the emulator is not running.", "Start it (QemuRunner.start, or a with-block) first.")
        return self.link, self.info

    @property
    def shared(self) -> bool:
        return self._mm is not None

    # -- queries ---------------------------------------------------------------------------------------
    def infer(self, x_int8: np.ndarray, via_shared: bool | None = None) -> InferResult:
        """One inference of one int8 input (flattened in the model's layout)."""
        if self.link is None:
            self.start()
        assert self.link is not None and self.info is not None
        x = np.ascontiguousarray(x_int8, dtype=np.int8).reshape(-1)
        if x.size != self.info.input_size:
            raise DeviceError(
                f"input has {x.size} int8 values, the firmware takes {self.info.input_size}.",
                "Quantize inputs of the model's input shape.",
            )
        use_shm = self.shared if via_shared is None else via_shared
        if use_shm:
            if not self.shared:
                raise DeviceError(
                    "shared RAM is not mapped for this emulator.",
                    "Start the runner with shared_ram=True on a board with a window.",
                )
            assert self._mm is not None
            self._mm[0 : x.size] = x.tobytes()
            res = self.link.infer_shared(0)
        else:
            res = self.link.infer_inline(x)
        check_status(res, self.info)

        return res

    # -- shutdown and failures -------------------------------------------------------------------------
    def wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return self.exit_code
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.exit_code

    def describe_failure(self) -> str:
        """QEMU's exit status (decoded) and the tail of its stderr, if it has exited."""
        if self.proc is None:
            return ""
        code = self.proc.poll()
        if code is None:
            return "(QEMU is still running.)"
        self.exit_code = code
        err = ""
        if self._stderr_path and self._stderr_path.exists():
            lines = [
                ln
                for ln in self._stderr_path.read_text(errors="replace").splitlines()
                if "waiting for connection" not in ln and "has no peer" not in ln
            ]
            err = " | ".join(lines[-5:])
        cause = EXIT_CODES.get(code, "")
        return f"(QEMU exited with code {code}{': ' + cause if cause else ''}{'; stderr: ' + err if err else ''})"

    def stop(self, timeout: float = 5.0) -> int | None:
        """SHUTDOWN, wait for QEMU to exit, kill it if it does not; returns its exit code."""
        if self.proc is None:
            return self.exit_code
        if self.link is not None and self.proc.poll() is None:
            try:
                self.link.shutdown(timeout=timeout)
            except DeviceError:
                pass
        self.wait_exit(timeout)
        self.kill()
        return self.exit_code

    def kill(self) -> None:
        """Kill QEMU (if running) and remove its files; idempotent."""
        if self.link is not None:
            self.link.t.close()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.exit_code = self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        lifetime.unregister(self._pidfile)
        self._pidfile = None
        self.link = None

    def __enter__(self) -> QemuRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
