"""An independent check of what a SysTick tick is worth under QEMU -icount shift=0.

QEMU's `-singlestep -d exec,nochain` logs every executed instruction; counting the log lines between the
entry of `<prefix>_run` and the entry of `dq_postprocess` gives the exact instructions of one inference,
to compare with the firmware's own measurement (ticks x 1e9/clock_hz). Slow (a log line per instruction):
for small models only.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from divqat_tvm.device.build import FirmwareBuild
from divqat_tvm.device.emulator import QemuRunner, ns_per_tick
from divqat_tvm.errors import DeviceError
from divqat_tvm.toolchain import tool

_TRACE = re.compile(r"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")


def symbol_address(elf: Path, name: str) -> int:
    out = subprocess.run([tool("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise DeviceError(f"{name} is not in {elf}.", "Rebuild the firmware.")


def compare_counts(fb: FirmwareBuild, x_int8: np.ndarray | None = None) -> dict:
    """One inference traced: exact instructions vs the firmware's ticks converted to instructions."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "exec.log"
        r = QemuRunner(fb, shared_ram=False, extra_args=["-singlestep", "-d", "exec,nochain", "-D", str(log)])
        info = r.start()
        x = np.arange(info.input_size).astype(np.int8) if x_int8 is None else x_int8
        res = r.infer(x)
        r.stop()
        start = symbol_address(fb.elf, fb.manifest["prefix"] + "_run")
        end = symbol_address(fb.elf, "dq_postprocess")
        pcs = [int(m.group(1), 16) for m in _TRACE.finditer(log.read_text())]
    try:
        i0 = pcs.index(start)
        i1 = pcs.index(end, i0)
    except ValueError as e:
        raise DeviceError(
            "the execution log does not show the inference.", "Check the QEMU version (7.2 log format)."
        ) from e
    per_tick = ns_per_tick(fb.board.clock_hz)
    return {
        "board": fb.board.name,
        "clock_hz": fb.board.clock_hz,
        "exact_instructions": i1 - i0,
        "ticks": res.model_ticks,
        "instructions_per_tick": per_tick,
        "estimated_instructions": res.model_ticks * per_tick,
        "difference": res.model_ticks * per_tick - (i1 - i0),
    }
