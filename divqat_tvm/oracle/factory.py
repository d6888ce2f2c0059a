"""Open an oracle from a spec string ("torch:CKPT", "tvm-host:DIR", "qemu:DIR[@board]", "serial:PORT@DIR").

The registry is explicit: each backend module registers its opener with `register_backend(kind, opener)`
from `_register_builtin()` below (one line per backend), never by scanning folders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle.base import Oracle


@dataclass(frozen=True)
class BackendSpec:
    """A parsed victim spec.

    Attributes:
        kind: backend name, e.g. "torch".
        path: checkpoint file (torch) or compiled build directory (others).
        board: QEMU board name for "qemu:DIR@board" (None: the build's default).
        port: serial port for "serial:PORT@DIR".
        devices: emulators behind the oracle (qemu only; None: the backend's default).
        executor: where those emulators run: "local" processes or "ray" actors (qemu only).
        host_build: the tvm-host library: "auto", "native" or "portable" (tvm-host only).
        threads: threads a tvm-host batch is split over (tvm-host only).
    """

    kind: str
    path: str
    board: str | None = None
    port: str | None = None
    devices: int | None = None
    executor: str = "local"
    host_build: str = "auto"
    threads: int = 1


#: opener(spec, defense, budget) -> Oracle; `defense` is a parsed post-processor or None.
Opener = Callable[[BackendSpec, object, "int | None"], Oracle]

_BACKENDS: dict[str, Opener] = {}

_FORMS = '"torch:CKPT", "tvm-host:BUILD_DIR", "qemu:BUILD_DIR[@board]" or "serial:PORT@BUILD_DIR"'


def register_backend(kind: str, opener: Opener) -> None:
    """Add (or replace) the opener for one backend kind."""
    _BACKENDS[kind] = opener


def backend_kinds() -> list[str]:
    """The registered backend kinds."""
    return sorted(_BACKENDS)


def parse_backend_spec(spec: str) -> BackendSpec:
    """Split a victim spec into its parts (does not check that files exist).

    Raises:
        DivqatError: no "KIND:" prefix, unknown kind, or an empty path/port.
    """
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not kind:
        raise DivqatError(f"Victim spec {spec!r} has no backend prefix.", f"Write it as {_FORMS}.")
    if kind not in _BACKENDS:
        raise DivqatError(
            f"Unknown victim backend {kind!r} in {spec!r}; the known backends are {', '.join(backend_kinds())}.",
            f"Write it as {_FORMS}.",
        )
    board = port = None
    path = rest
    if kind == "qemu" and "@" in rest:
        path, _, board = rest.rpartition("@")
        if not board:
            raise DivqatError(
                f"Victim spec {spec!r} ends with '@' but names no board.", "Write qemu:BUILD_DIR@BOARD or drop the '@'."
            )
    elif kind == "serial":
        port, at, path = rest.partition("@")
        if not at or not port:
            raise DivqatError(
                f"Victim spec {spec!r} does not name both a port and a build directory.",
                "Write serial:PORT@BUILD_DIR, e.g. serial:/dev/ttyACM0@build/tinycnn.",
            )
    if not path:
        raise DivqatError(f"Victim spec {spec!r} names no path.", f"Write it as {_FORMS}.")
    return BackendSpec(kind, path, board, port)


def open_oracle(
    spec: str,
    defense=None,
    budget: int | None = None,
    devices: int | None = None,
    executor: str = "local",
    host_build: str = "auto",
    threads: int = 1,
) -> Oracle:
    """Open the victim named by `spec`, answering through `defense` (a spec string or post-processor).

    `devices` emulators (qemu only) answer each batch together, in order, as one would; `executor` "ray"
    runs them as Ray actors (see `oracle.pool`). `host_build` and `threads` choose the tvm-host library
    ("auto" | "native" | "portable") and how many threads split a batch.

    Raises:
        DivqatError: bad victim or defence spec, devices or an executor for a backend without emulators,
            or whatever the backend raises for a missing file.
    """
    import dataclasses

    from divqat_tvm.defenses import parse_defense

    if isinstance(defense, str) or defense is None:
        defense = parse_defense(defense)
    parsed = parse_backend_spec(spec)
    if devices is not None and devices < 1:
        raise DivqatError(f"--devices must be at least 1, not {devices}.", "Pass --devices 1 or more.")
    if executor not in ("local", "ray"):
        raise DivqatError(f"Unknown executor {executor!r}.", "Use --executor local or ray.")
    if parsed.kind != "qemu" and ((devices or 1) > 1 or executor != "local"):
        raise DivqatError(
            f"--devices and --executor ray spread queries over emulators; the {parsed.kind} backend has none.",
            "Use a qemu:BUILD_DIR victim, or drop those options.",
        )
    if parsed.kind != "tvm-host" and (host_build != "auto" or threads != 1):
        raise DivqatError(
            f"--host-build and --oracle-threads choose the tvm-host library; the {parsed.kind} backend has none.",
            "Use a tvm-host:BUILD_DIR victim, or drop those options.",
        )
    parsed = dataclasses.replace(parsed, devices=devices, executor=executor, host_build=host_build, threads=threads)
    return _BACKENDS[parsed.kind](parsed, defense, budget)


def victim_meta(spec: str) -> dict:
    """The victim's metadata (input shape, classes, normalisation) without opening a device.

    An attacker knows the input format a deployed model expects (a camera's bytes); this reads it from the
    checkpoint (torch) or the compiled build's manifest (tvm-host, qemu, serial), never the weights.

    Raises:
        DivqatError: bad spec, or a build directory without a manifest.
    """
    import json
    from pathlib import Path

    parsed = parse_backend_spec(spec)
    if parsed.kind == "torch":
        from divqat_tvm.train.checkpoint import read_checkpoint

        return dict(read_checkpoint(parsed.path)["meta"])
    manifest = Path(parsed.path) / "manifest.json"
    if not manifest.is_file():
        raise DivqatError(
            f"{manifest} does not exist: {parsed.path} is not a compiled build.",
            "Compile the model first (divqat-tvm compile MODEL --out DIR).",
        )
    return dict(json.loads(manifest.read_text()).get("meta") or {})


def _open_torch(spec: BackendSpec, defense, budget: int | None) -> Oracle:
    from divqat_tvm.oracle.backend_torch import TorchOracle

    return TorchOracle.from_checkpoint(spec.path, defense=defense, budget=budget)


def _open_tvm_host(spec: BackendSpec, defense, budget: int | None) -> Oracle:
    from divqat_tvm.oracle.backend_tvm_host import open_tvm_host

    return open_tvm_host(spec, defense, budget)


def _open_qemu(spec: BackendSpec, defense, budget: int | None) -> Oracle:
    from divqat_tvm.oracle.backend_device import open_qemu

    return open_qemu(spec, defense, budget)


def _open_serial(spec: BackendSpec, defense, budget: int | None) -> Oracle:
    from divqat_tvm.oracle.backend_device import open_serial

    return open_serial(spec, defense, budget)


def _register_builtin() -> None:
    """One line per backend (explicit registry); backends import lazily, so unused ones cost nothing."""
    register_backend("torch", _open_torch)
    register_backend("tvm-host", _open_tvm_host)
    register_backend("qemu", _open_qemu)
    register_backend("serial", _open_serial)


_register_builtin()
