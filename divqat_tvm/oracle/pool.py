"""A pool of emulated devices behind one oracle (`--devices N`): a query batch is cut into N contiguous
chunks, in order, one per device, and the answers are put back in the same order. Every device runs the
same firmware, so the answers (and an attack's query log) are byte-identical to one device's.

Locally the devices are N QemuRunner instances driven from threads (QEMU does the work, so threads do not
contend for the GIL). With the `ray` executor they are N Ray actors, each holding one emulator and one
`emulator` resource slot, anywhere on the cluster: each gets the firmware image with its first call.

`ray_session` (also used by the experiment's Ray executor) connects to a cluster or starts a private one
bound to 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.device.build import FirmwareBuild
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.device.protocol import DeviceInfo, DeviceProtocolError, InferResult
from divqat_tvm.errors import DeviceError, DivqatError

#: Ray's switch: with "0" a local Ray binds its servers to 127.0.0.1 (single node; never another address)
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTALL_FIX = "Install the cluster extra: pip install 'divqat-tvm[cluster]' (or scripts/setup.sh --cluster)."
EXECUTORS = ("local", "ray")


def import_ray(what: str = "--executor ray") -> Any:
    """The `ray` module.

    Raises:
        DivqatError: Ray is not installed (names the fix).
    """
    try:
        import ray
    except ImportError:
        raise DivqatError(f"{what} needs Ray, which is not installed.", INSTALL_FIX) from None
    return ray


def is_loopback(address: str) -> bool:
    """Whether a Ray address ("HOST:PORT", "ray://HOST:PORT") is on this machine's loopback interface."""
    host = address.split("://")[-1].rpartition(":")[0] or address
    return host.strip("[]") in ("127.0.0.1", "localhost", "::1")


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, emulators: int | None = None) -> Iterator[Any]:
    """Connect to the Ray cluster at `address` (default: $RAY_ADDRESS), or start a private one on 127.0.0.1;
    yields the `ray` module.

    A private cluster has `num_cpus` CPUs and `emulators` emulator slots (default: the machine's cores) and
    is shut down on exit; an already connected session is reused and left open.

    Raises:
        DivqatError: Ray missing, or the cluster unreachable.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address is None or is_loopback(address)
    if local:  # a cluster on this machine: Ray must not swap 127.0.0.1 for the machine's network address
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")  # read when ray is imported
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if local:
        try:  # ray imported before the variable was set (e.g. by a test): the same switch, at run time
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = os.environ[LOCAL_ONLY_ENV] != "0"
        except (ImportError, AttributeError):
            pass
    if address is None:
        cpus = num_cpus or os.cpu_count() or 1
        kw: dict[str, Any] = {"num_cpus": cpus, "resources": {"emulator": float(emulators or cpus)}}
    else:
        kw = {"address": address}
    try:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        cause = repr(e.__cause__ or e)
        fix = "Start it with `ray start --head` (docs/cluster.md), or drop --address to run a local one."
        if "Authentication" in cause or "auth" in cause.lower():
            fix = "The cluster uses token authentication: run the driver with RAY_AUTH_MODE=token and the cluster's token (docs/cluster.md)."
        raise DivqatError(
            f"Cannot connect to {where} ({(str(e).splitlines() or [type(e).__name__])[0]}).", fix
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


class DeviceActor:
    """One emulator on a Ray worker (wrapped with `ray.remote` by `RayDevices`)."""

    def __init__(self, fw: FirmwareBuild, elf: bytes, shared_ram: bool, timeout: float) -> None:
        self._dir = tempfile.mkdtemp(prefix="dq-actor-")
        (Path(self._dir) / "firmware.elf").write_bytes(elf)  # this node may not see the driver's build directory
        self.fw = dataclasses.replace(fw, out_dir=Path(self._dir))
        self.shared_ram, self.timeout = shared_ram, timeout
        self.runner: QemuRunner | None = None
        self.restarts = 0

    def start(self) -> DeviceInfo:
        if self.runner is None or self.runner.link is None:
            self.runner = QemuRunner(self.fw, shared_ram=self.shared_ram, timeout=self.timeout)
            self.runner.start()
        assert self.runner.info is not None
        return self.runner.info

    def infer(self, xq: np.ndarray) -> list[InferResult]:
        """One answer per int8 row, in order; a crash or hang restarts the emulator and retries once."""
        out = []
        for x in xq:
            try:
                self.start()
                assert self.runner is not None
                out.append(self.runner.infer(x))
            except DeviceProtocolError:
                raise
            except DeviceError:
                if self.runner is not None:
                    self.runner.kill()
                self.runner = None
                self.restarts += 1
                self.start()
                assert self.runner is not None
                out.append(self.runner.infer(x))
        return out

    def stop(self) -> int:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        shutil.rmtree(self._dir, ignore_errors=True)
        return self.restarts


class RayDevices:
    """N emulators as Ray actors; `run(xq)` spreads a batch over them in order."""

    def __init__(self, fw: FirmwareBuild, n: int, shared_ram: bool = True, timeout: float = 60.0) -> None:
        self._stack = ExitStack()
        self.ray = self._stack.enter_context(ray_session(num_cpus=n, emulators=n))
        if self.ray.cluster_resources().get("emulator", 0) < 1:
            self._stack.close()
            raise DivqatError(
                "No node of the Ray cluster offers an 'emulator' resource for the device actors.",
                "Start the nodes with: ray start ... --resources='{\"emulator\": 2}' (docs/cluster.md).",
            )
        actor = self.ray.remote(num_cpus=0, resources={"emulator": 1}, max_restarts=1)(DeviceActor)
        elf = fw.elf.read_bytes()
        self.actors = [actor.remote(fw, elf, shared_ram, timeout) for _ in range(n)]

    def start(self) -> list[DeviceInfo]:
        return self.ray.get([a.start.remote() for a in self.actors])

    def run(self, xq: np.ndarray) -> list[InferResult]:
        k = min(len(self.actors), len(xq))
        chunks = np.array_split(np.arange(len(xq)), k) if k else []
        parts = self.ray.get([self.actors[i].infer.remote(xq[c]) for i, c in enumerate(chunks)])
        return [r for part in parts for r in part]

    def close(self) -> int:
        """Stop the emulators (returns their restarts) and leave the cluster."""
        restarts = 0
        try:
            restarts = sum(self.ray.get([a.stop.remote() for a in self.actors], timeout=60))
        except Exception:  # noqa: BLE001 -- an actor that died takes its emulator with it
            pass
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        self._stack.close()
        return restarts
