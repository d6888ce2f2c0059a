"""Device backends: `qemu` (firmware under QEMU, several emulators in parallel) and `serial` (a real board,
or QEMU behind a pty). The firmware quantized input goes over the link (UART, or QEMU shared RAM plus a
doorbell frame); softmax and the defence run in C on the device."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from divqat_tvm.defenses.spec import from_postprocessor
from divqat_tvm.device.build import FirmwareBuild, build_firmware, read_manifest
from divqat_tvm.device.emulator import QemuRunner, check_status
from divqat_tvm.device.protocol import DeviceLink, DeviceProtocolError, InferResult
from divqat_tvm.errors import DeviceError, DivqatError, TargetError
from divqat_tvm.oracle.backend_tvm_host import model_io, quantize_input
from divqat_tvm.oracle.base import Oracle
from divqat_tvm.oracle.pool import EXECUTORS, RayDevices
from divqat_tvm.targets import load_board, resolve

if TYPE_CHECKING:
    from divqat_tvm.device.protocol import Stats
    from divqat_tvm.oracle.factory import BackendSpec

DEFAULT_QEMU_BOARD = "mps2-an500"


def default_board(manifest: dict) -> str:
    """The QEMU board for a build: its target's board if that is a QEMU machine, else the M7 machine."""
    target = manifest.get("target")
    if target:
        try:
            t = resolve(str(target))
            if t.board is not None and t.board.is_qemu:
                return t.board.name
        except TargetError:
            pass  # a target this installation does not know: emulate on the default machine
    return DEFAULT_QEMU_BOARD


def check_firmware(info_sha: str, manifest: dict, where: str) -> None:
    """The firmware must run the model of this build directory (same source-model hash)."""
    want = (manifest.get("source_model") or {}).get("sha256") or "unknown"
    if info_sha != want:
        raise DeviceError(
            f"the firmware on {where} runs model {info_sha[:12]}, but the build directory holds {want[:12]}.",
            "Flash the firmware built from this directory (divqat-tvm flash), or point at the right build.",
        )


class QemuOracle(Oracle):
    """The firmware under QEMU. `transfer` is "shared" (shared RAM + doorbell) or "uart" (bytes over the UART).

    Args:
        build_dir: compiled model directory.
        board: QEMU board (default: the build's target board, else mps2-an500).
        defense: compiled into the firmware (RS or DCP).
        instances: emulators run in parallel for batches (default 2: both cores); `--devices N`.
        profile: build the profiling firmware (per-operator STATS).
        executor: "local" (the emulators are child processes driven from threads) or "ray" (Ray actors, one
            `emulator` slot each; see `oracle.pool`). Either way a batch is spread over them in order, so
            the answers are byte-identical to one emulator's.
    """

    kind = "qemu"

    def __init__(
        self,
        build_dir: str | Path,
        board: str | None = None,
        defense: object = None,
        budget: int | None = None,
        transfer: str = "shared",
        instances: int = 2,
        profile: bool = False,
        timeout: float = 60.0,
        firmware: FirmwareBuild | None = None,
        executor: str = "local",
    ) -> None:
        self.manifest = read_manifest(Path(build_dir))
        shape, k = model_io(self.manifest)
        super().__init__(shape, k, budget)
        if transfer not in ("shared", "uart"):
            raise DeviceError(f"unknown transfer '{transfer}'.", "Use 'shared' (QEMU shared RAM) or 'uart'.")
        self.defense = from_postprocessor(defense)
        board = board or default_board(self.manifest)
        if not load_board(board).is_qemu:
            raise DeviceError(f"board '{board}' is not a QEMU machine.", "Use serial:PORT@BUILD_DIR for a real board.")
        self.fw = firmware or build_firmware(build_dir, board, self.defense, profile=profile)
        self.transfer = transfer
        self.instances = max(1, int(instances))
        self.timeout = timeout
        self._runners: list[QemuRunner | None] = [None] * self.instances
        self._lock = threading.Lock()
        self.last_results: list[InferResult] = []
        self.restarts = 0
        if executor not in EXECUTORS:
            raise DivqatError(f"Unknown executor {executor!r} for the device pool.", f"Use {' or '.join(EXECUTORS)}.")
        self.executor = executor
        self._ray: RayDevices | None = None
        if executor == "ray":
            self._ray = RayDevices(self.fw, self.instances, shared_ram=transfer == "shared", timeout=timeout)
            try:
                for info in self._ray.start():
                    check_firmware(info.model_sha256, self.manifest, f"QEMU {self.fw.board.name} (Ray actor)")
            except BaseException:
                self.close()
                raise

    def _runner(self, i: int) -> QemuRunner:
        r = self._runners[i]
        if r is None or r.link is None:
            r = QemuRunner(self.fw, shared_ram=self.transfer == "shared", timeout=self.timeout)
            info = r.start()
            check_firmware(info.model_sha256, self.manifest, f"QEMU {self.fw.board.name}")
            self._runners[i] = r
        return r

    def _infer_one(self, i: int, x: np.ndarray) -> InferResult:
        """One input on emulator i; a crash or hang restarts the emulator and retries once."""
        try:
            return self._runner(i).infer(x)
        except DeviceProtocolError:
            raise
        except DeviceError:
            r = self._runners[i]
            if r is not None:
                r.kill()
            self._runners[i] = None
            with self._lock:
                self.restarts += 1
            return self._runner(i).infer(x)

    def run_int8(self, xq: np.ndarray) -> list[InferResult]:
        """int8 inputs [N, INPUT_SIZE] -> one InferResult each, spread over the emulators in order."""
        n = len(xq)
        if self._ray is not None:
            return self._ray.run(xq)
        k = min(self.instances, n)
        if k <= 1:
            return [self._infer_one(0, xq[j]) for j in range(n)]
        chunks = np.array_split(np.arange(n), k)

        def work(i: int) -> list[InferResult]:
            return [self._infer_one(i, xq[j]) for j in chunks[i]]

        with ThreadPoolExecutor(k) as pool:
            parts = list(pool.map(work, range(k)))
        return [r for part in parts for r in part]

    def _query(self, x: np.ndarray) -> np.ndarray:
        res = self.run_int8(quantize_input(x, self.manifest))
        self.last_results = res
        return np.stack([r.probs for r in res]).astype(np.float32)

    def stats(self, i: int = 0) -> Stats:
        """Per-operator ticks of emulator i's last inference (profiling firmware)."""
        link, _ = self._runner(i).connection()
        return link.stats()

    def close(self) -> None:
        if self._ray is not None:
            self.restarts += self._ray.close()
            self._ray = None
        for i, r in enumerate(self._runners):
            if r is not None:
                r.stop()
            self._runners[i] = None


class SerialOracle(Oracle):
    """A board (or QEMU with -serial pty) running our firmware, over pyserial. UART transfer only."""

    kind = "serial"

    def __init__(
        self,
        port: str,
        build_dir: str | Path,
        budget: int | None = None,
        baud: int = 115200,
        timeout: float = 60.0,
        defense: object = None,
    ) -> None:
        from divqat_tvm.device.serial_link import SerialTransport

        self.manifest = read_manifest(Path(build_dir))
        shape, k = model_io(self.manifest)
        super().__init__(shape, k, budget)
        spec = from_postprocessor(defense)
        self.link = DeviceLink(SerialTransport(port, baud), timeout=timeout)
        self.link.drain(quiet=0.2, limit=2.0)  # a banner or stale bytes from before we opened the port
        self.info = self.link.info()
        check_firmware(self.info.model_sha256, self.manifest, port)
        if self.info.defense != spec.code:
            raise DeviceError(
                f"the firmware on {port} was built with defence code {self.info.defense}, "
                f"but {spec.spec()} was asked for.",
                "Flash the firmware built with that --defense.",
            )
        self.last_results: list[InferResult] = []

    def _query(self, x: np.ndarray) -> np.ndarray:
        xq = quantize_input(x, self.manifest)
        self.last_results = [self.link.infer_inline(row) for row in xq]
        for r in self.last_results:
            check_status(r, self.info)
        return np.stack([r.probs for r in self.last_results]).astype(np.float32)

    def close(self) -> None:
        self.link.t.close()


def open_qemu(spec: BackendSpec, defense: object, budget: int | None) -> Oracle:
    """Opener for the factory: "qemu:BUILD_DIR[@board]" (`spec.devices` emulators, default 2)."""
    return QemuOracle(
        spec.path,
        board=spec.board,
        defense=defense,
        budget=budget,
        instances=spec.devices if spec.devices is not None else 2,
        executor=spec.executor,
    )


def open_serial(spec: BackendSpec, defense: object, budget: int | None) -> Oracle:
    """Opener for the factory: "serial:PORT@BUILD_DIR"."""
    if spec.port is None:
        raise DivqatError(f"the serial victim {spec.path!r} names no port.", "Write it as serial:PORT@BUILD_DIR.")
    return SerialOracle(spec.port, spec.path, budget=budget, defense=defense)
