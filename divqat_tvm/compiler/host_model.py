"""Run the compiled C on the host: gcc -O2 -shared of model.c + kernels.c, loaded with ctypes.

This is the `tvm-host` way of running a compiled model, and the reference the firmware must match
bit for bit. The firmware's oracle adds its own C (e.g. firmware/src/postprocess.c) through
`extra_sources` / `include_dirs`, built into the same library.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from divqat_tvm.errors import CompileError
from divqat_tvm.toolchain import shared_library

HOST_CFLAGS = ("-O2", "-std=c99", "-ffp-contract=off", "-Wall")


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float32 → int8 exactly as ONNX QuantizeLinear: x / scale in float32, round half to even, saturate."""
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.int64) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)


class HostModel:
    """A compiled model folder run on the host. `run(int8 [N, ...]) -> int8 [N, K]`.

    Args:
        build_dir: a folder written by `divqat-tvm compile` (model.h, model.c, kernels.c, manifest.json).
        extra_sources: more C files to build into the same shared library.
        include_dirs: more -I folders for them.
        cc: the host C compiler.
    """

    def __init__(
        self,
        build_dir: str | Path,
        extra_sources: tuple[str | Path, ...] = (),
        include_dirs: tuple[str | Path, ...] = (),
        cc: str = "gcc",
    ) -> None:
        self.build_dir = Path(build_dir)
        manifest_path = self.build_dir / "manifest.json"
        if not manifest_path.is_file():
            raise CompileError(
                f"'{self.build_dir}' has no manifest.json.",
                "Compile the model first: divqat-tvm compile MODEL --out DIR.",
            )
        self.manifest = json.loads(manifest_path.read_text())
        self.prefix = self.manifest["prefix"]
        self.input_shape = tuple(self.manifest["input"]["shape"][1:])
        self.output_shape = tuple(self.manifest["output"]["shape"][1:])
        self.input_size = int(np.prod(self.input_shape))
        self.output_size = int(np.prod(self.output_shape))
        sources = [self.build_dir / s for s in self.manifest.get("sources", ["model.c", "kernels.c"])]
        sources += [Path(s) for s in extra_sources]
        self.library_path = self._build(sources, [self.build_dir, *map(Path, include_dirs)], cc)
        self.lib = ctypes.CDLL(str(self.library_path))
        self._run = getattr(self.lib, f"{self.prefix}_run")
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._run.restype = ctypes.c_int

    def _build(self, sources: list[Path], includes: list[Path], cc: str) -> Path:
        headers = sorted(h for inc in includes for h in Path(inc).glob("*.h"))
        return shared_library(
            sources,
            self.build_dir,
            [*HOST_CFLAGS, *(f"-I{i}" for i in includes)],
            headers=headers,
            stem="host",
            cc=cc,
            what=f"the host build of {self.build_dir}",
        )

    @property
    def input_qparams(self) -> tuple[float, int]:
        return float(self.manifest["input"]["scale"]), int(self.manifest["input"]["zero_point"])

    @property
    def output_qparams(self) -> tuple[float, int]:
        return float(self.manifest["output"]["scale"]), int(self.manifest["output"]["zero_point"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, ...] in the model's input space → int8 with the model's input qparams."""
        return quantize(x, *self.input_qparams)

    def run(self, x: np.ndarray) -> np.ndarray:
        """int8 [N, *input_shape] → int8 [N, *output_shape]."""
        x = np.ascontiguousarray(x, dtype=np.int8)
        if x.shape[1:] != self.input_shape and x.reshape(len(x), -1).shape[1] != self.input_size:
            raise CompileError(
                f"input of shape {x.shape} does not match the model's {self.input_shape}.",
                "Pass int8 [N, *input_shape].",
            )
        x = x.reshape(len(x), self.input_size)
        out = np.empty((len(x), self.output_size), dtype=np.int8)
        for i in range(len(x)):
            rc = self._run(x[i].ctypes.data, out[i].ctypes.data)
            if rc != 0:
                raise CompileError(f"{self.prefix}_run returned {rc} on sample {i}.", "Report this as a bug.")
        return out.reshape((len(x), *self.output_shape))

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """float32 input → dequantized float32 output (logits)."""
        return dequantize(self.run(self.quantize_input(x)), *self.output_qparams)
