"""`tvm-host`: the compiled model's C and the firmware's post-processing C, run on the host (ctypes).

Inputs are quantized to int8 exactly as the device backends quantize them, so this backend's probabilities
are bit-identical to the firmware's under QEMU (tests/oracle/test_device_oracles.py checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from divqat_tvm.defenses.spec import from_postprocessor
from divqat_tvm.device.build import read_manifest
from divqat_tvm.device.host_twin import HostTwin
from divqat_tvm.oracle.base import Oracle
from divqat_tvm.quant.primitives import quantize_np


def model_io(manifest: dict[str, Any]) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) the oracle takes and K it answers, from the manifest's input/output shapes and layout."""
    shape = [int(d) for d in manifest["input"]["shape"]]
    if len(shape) in (2, 3):  # [1, N] or [1, T, C]: not an image, the oracle takes [N, *shape[1:]]
        return tuple(shape[1:]), int(manifest["output"]["shape"][-1])  # type: ignore[return-value]
    dims = shape[1:] if len(shape) == 4 else shape
    if manifest["input"].get("layout", "NCHW") == "NHWC":
        dims = [dims[2], dims[0], dims[1]]
    k = int(manifest["output"]["shape"][-1])
    return (int(dims[0]), int(dims[1]), int(dims[2])), k


def quantize_input(x: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    """float32 [N, C, H, W] -> int8 [N, INPUT_SIZE] in the model's layout: a camera's bytes."""
    q = quantize_np(x, np.float32(manifest["input"]["scale"]), int(manifest["input"]["zero_point"]), -128, 127)
    if manifest["input"].get("layout", "NCHW") == "NHWC":
        q = q.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(q).reshape(len(x), -1)


class TvmHostOracle(Oracle):
    """Answer queries with the host build of the compiled C (+ the firmware's softmax and defence).

    `host_build`: "auto" (the fastest exact build: native where the host has it), "native" or "portable";
    `threads`: a batch split over that many copies of the library (same answers, in order).
    """

    kind = "tvm-host"

    def __init__(
        self,
        build_dir: str | Path,
        defense: object = None,
        budget: int | None = None,
        host_build: str = "auto",
        threads: int = 1,
    ) -> None:
        self.manifest = read_manifest(Path(build_dir))
        shape, k = model_io(self.manifest)
        super().__init__(shape, k, budget)
        self.defense = from_postprocessor(defense)
        self._twin = HostTwin(build_dir, self.defense, host_build=host_build, threads=threads)
        self.last_logits: np.ndarray | None = None

    @property
    def build_info(self) -> str:
        """Which host build answers, e.g. "native (avx512-vnni conv), 1 thread"."""
        return self._twin.describe()

    def close(self) -> None:
        self._twin.close()

    def _query(self, x: np.ndarray) -> np.ndarray:
        logits, probs = self._twin.infer(quantize_input(x, self.manifest))
        self.last_logits = logits
        return probs


def open_tvm_host(spec: Any, defense: object, budget: int | None) -> Oracle:
    """Opener for the factory: "tvm-host:BUILD_DIR"."""
    return TvmHostOracle(spec.path, defense=defense, budget=budget, host_build=spec.host_build, threads=spec.threads)
