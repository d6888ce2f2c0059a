"""The emulated boards whose cores run each code path of the hand-written kernels (csrc/), for the QEMU tests
(helpers, not tests): one list, so every kernel test covers the same paths."""

from __future__ import annotations

import pytest

#: (board, core, the kernels' path on that core: the manifest's variant "path"): DSP on the Cortex-M7 and M4, MVE
#: on the M55, plain C on the M3
KERNEL_PATHS = [
    ("mps2-an500", "cortex-m7", "dsp"),
    ("mps2-an386", "cortex-m4", "dsp"),
    ("mps3-an547", "cortex-m55", "mve"),
    ("mps2-an385", "cortex-m3", "c"),
]
#: (board, core) of KERNEL_PATHS, for `@pytest.mark.parametrize("board,core", KERNEL_BOARDS)`
KERNEL_BOARDS = [(board, core) for board, core, _ in KERNEL_PATHS]

needs_emulator = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
