"""Measure a firmware image's footprint: flash by section and by part, RAM, and (under QEMU or over a board's
port) instructions or cycles per inference and per operator.

`measure_footprint` is the device layer's front door for it; `report.footprint` only renders the dict it returns.
Units are always in the key names or beside the figures: bytes; `instructions (emulated)` under QEMU -icount;
`cycles (board)` on a board.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from divqat_tvm.device.image import static_footprint
from divqat_tvm.errors import DeviceError

if TYPE_CHECKING:
    import numpy as np

# ------------------------------------------------------------------------------------------ measured part


def unit_of(qemu: bool, timer: str) -> str:
    """The unit a device's counter measures: instructions under QEMU -icount, cycles on a board."""
    return "instructions (emulated)" if qemu else "cycles (board)"


def _per_tick(qemu: bool, timer: str, clock_hz: int) -> float:
    """Counter ticks -> the unit: SysTick under QEMU ticks once per 1e9/clock_hz instructions (1 ns each);
    on a board SysTick (core clock source) and DWT both count core cycles."""
    return 1e9 / clock_hz if qemu else 1.0


def measure_link(link: Any, ops: list[dict], inputs: np.ndarray, profile_link: Any = None) -> dict[str, Any]:
    """Counts per inference (and per operator from a profiling firmware) over open device links."""
    import numpy as np

    info = link.info()
    per_tick = _per_tick(info.qemu, info.timer, info.clock_hz)
    unit = unit_of(info.qemu, info.timer)
    model, post, peak = [], [], 0
    for x in inputs:
        r = link.infer_inline(x)
        model.append(r.model_ticks)
        post.append(r.post_ticks)
        peak = max(peak, r.stack_peak)
    out: dict[str, Any] = {
        "unit": unit,
        "timer": info.timer,
        "ticks_to_unit": per_tick,
        "resolution": per_tick if info.qemu else 1.0,
        "inputs": int(len(inputs)),
        "board": info.board,
        "cpuid": f"{info.cpuid:#010x}",
        "model_per_inference": {
            "mean": float(np.mean(model)) * per_tick,
            "min": min(model) * per_tick,
            "max": max(model) * per_tick,
        },
        "postprocess_per_inference": {
            "mean": float(np.mean(post)) * per_tick,
            "min": min(post) * per_tick,
            "max": max(post) * per_tick,
        },
        "stack_peak_bytes": int(peak),
    }
    out["total_per_inference"] = out["model_per_inference"]["mean"] + out["postprocess_per_inference"]["mean"]
    if profile_link is not None:
        sums: np.ndarray | None = None
        totals = []
        for x in inputs:
            profile_link.infer_inline(x)
            st = profile_link.stats()
            sums = np.array(st.op_ticks, dtype=np.float64) if sums is None else sums + st.op_ticks
            totals.append(st.total_ticks)
        if sums is None:
            raise DeviceError("no inputs to profile the operators with.", "Pass at least one input.")
        per_op = sums / len(inputs) * per_tick
        rows = []
        for i, v in enumerate(per_op):
            op: dict[str, Any] = ops[i] if i < len(ops) else {"name": f"op{i}", "kind": "?", "macs": 0}
            macs = int(op.get("macs", 0) or 0)
            rows.append(
                {
                    "index": i,
                    "name": op.get("name"),
                    "kind": op.get("kind"),
                    "macs": macs,
                    "count": float(v),
                    "per_mac": float(v) / macs if macs else None,
                }
            )
        prof_total = float(np.mean(totals)) * per_tick
        out["per_operator"] = rows
        out["profiled_total"] = prof_total
        out["profiling_overhead"] = prof_total - float(per_op.sum())
    return out


def measure_qemu(build_dir: Path, board: str, defense: Any = None, n: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run the plain and the profiling firmware under QEMU on n random int8 inputs."""
    import numpy as np

    from divqat_tvm.device.build import build_firmware
    from divqat_tvm.device.emulator import QemuRunner

    fb = build_firmware(build_dir, board, defense)
    fbp = build_firmware(build_dir, board, defense, profile=True)
    with QemuRunner(fb, shared_ram=False) as r, QemuRunner(fbp, shared_ram=False) as rp:
        assert r.info is not None
        xs = np.random.default_rng(seed).integers(-128, 128, (n, r.info.input_size)).astype(np.int8)
        return measure_link(r.link, fb.manifest.get("ops", []), xs, rp.link)


def measure_footprint(
    build_dir: str | Path, board: str, defense: Any = None, n: int = 3, port: str | None = None
) -> dict[str, Any]:
    """Static footprint plus measured counts: over `port` when given (a board running this firmware), else
    under QEMU for a QEMU board; a real board without a port gets the static figures only."""
    import numpy as np

    from divqat_tvm.device.build import build_firmware

    fb = build_firmware(build_dir, board, defense)
    fp = static_footprint(fb)
    if port is None and fb.board.is_qemu:
        m = measure_qemu(Path(build_dir), board, defense, n)
    elif port is not None:
        from divqat_tvm.device.protocol import DeviceLink
        from divqat_tvm.device.serial_link import SerialTransport

        link = DeviceLink(SerialTransport(port))
        try:
            link.drain(0.2, 2.0)
            info = link.info()
            xs = np.random.default_rng(0).integers(-128, 128, (n, info.input_size)).astype(np.int8)
            m = measure_link(link, fb.manifest.get("ops", []), xs, link if info.profile else None)
        finally:
            link.t.close()
    else:
        m = None
    fp["measured"] = m
    if m is None:
        fp["measured_note"] = (
            f"{board} is a real board and no --port was given: counts need the board (flash it, then pass --port)."
        )
    else:
        macs = fp["macs"]
        fp["measured"]["per_mac"] = m["model_per_inference"]["mean"] / macs if macs else None
        ram = dict(fp["ram_by_part_bytes"])
        fp["ram_used_bytes"] = {
            "arena": fp["arena_bytes"],
            "stack peak (measured)": m["stack_peak_bytes"],
            "other data/bss": sum(v for k, v in ram.items() if k not in ("arena", "stack region")),
        }
    return fp
