"""The firmware's inference path built for the host: model C + firmware/src/postprocess.c in one shared
library (ctypes). The tvm-host oracle runs it, so its probabilities are the firmware's, bit for bit."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from divqat_tvm.defenses.spec import DefenseSpec, from_postprocessor
from divqat_tvm.device.build import FIRMWARE_DIR, WARNING_CFLAGS, read_manifest
from divqat_tvm.errors import DeviceError
from divqat_tvm.fileio import atomic_write_text
from divqat_tvm.toolchain import shared_library

HOST_CFLAGS = ["-O2", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math", "-Wall"]
_P = ctypes.c_void_p


class HostTwin:
    """model.c + kernels.c + postprocess.c compiled with the host gcc; int8 in -> int8 logits + probabilities."""

    def __init__(self, build_dir: str | Path, defense: str | DefenseSpec | None = None) -> None:
        self.build_dir = Path(build_dir).resolve()
        self.manifest = read_manifest(self.build_dir)
        self.defense = from_postprocessor(defense)
        self.lib_path = self._build()
        self.lib = ctypes.CDLL(str(self.lib_path))
        self.lib.dq_host_infer.argtypes = [_P, ctypes.c_uint32, _P, _P]
        self.lib.dq_host_infer.restype = ctypes.c_int
        self.lib.dq_host_postprocess.argtypes = [_P, ctypes.c_uint32, ctypes.c_float, ctypes.c_int32, _P]
        self.input_size = int(self.lib.dq_host_input_size())
        self.output_size = int(self.lib.dq_host_output_size())

    def _build(self) -> Path:
        prefix = self.manifest["prefix"]
        up = prefix.upper()
        defines = (
            [f"-DDQ_MODEL_RUN={prefix}_run"]
            + [f"-DDQ_{n}={up}_{n}" for n in ("INPUT_SIZE", "OUTPUT_SIZE", "OUTPUT_SCALE", "OUTPUT_ZERO_POINT")]
            + [
                f"-DDQ_OUTPUT_PROBABILITIES={1 if self.manifest.get('output', {}).get('kind') == 'probabilities' else 0}"
            ]
            + self.defense.c_defines()
        )
        fw_srcs = [FIRMWARE_DIR / "src" / "postprocess.c", FIRMWARE_DIR / "host" / "host_glue.c"]
        srcs = sorted(self.build_dir.glob("*.c")) + fw_srcs
        flags = HOST_CFLAGS + defines + [f"-I{FIRMWARE_DIR / 'include'}", f"-I{self.build_dir}"]
        headers = sorted(self.build_dir.glob("*.h")) + sorted((FIRMWARE_DIR / "include").glob("*.h"))
        out = self.build_dir / f"host-{self.defense.tag or 'none'}"
        # the firmware's own C is held to -Werror (the generated model C to -Wall)
        lib = shared_library(
            srcs,
            out,
            flags,
            headers=headers,
            stem="libdq_host",
            what="building the host twin library",
            strict=(fw_srcs, WARNING_CFLAGS),
        )
        atomic_write_text(out / "host.json", json.dumps({"flags": flags, "lib": lib.name}, indent=2) + "\n")
        return lib

    def infer(self, x_int8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 inputs [N, ...] (INPUT_SIZE values each) -> (int8 logits [N, K], float32 probabilities [N, K])."""
        x = np.ascontiguousarray(x_int8, dtype=np.int8).reshape(len(x_int8), -1)
        if x.shape[1] != self.input_size:
            raise DeviceError(
                f"input rows have {x.shape[1]} int8 values, the model takes {self.input_size}.",
                "Quantize inputs of the model's input shape.",
            )
        n = x.shape[0]
        logits = np.zeros((n, self.output_size), np.int8)
        probs = np.zeros((n, self.output_size), np.float32)
        rc = self.lib.dq_host_infer(x.ctypes.data, n, logits.ctypes.data, probs.ctypes.data)
        if rc != 0:
            raise DeviceError(f"the host build of the model returned {rc}.", "Compile the model again.")
        return logits, probs

    def postprocess(self, logits: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
        """The C softmax + defence on one int8 logit vector."""
        q = np.ascontiguousarray(logits, dtype=np.int8)
        out = np.zeros(q.size, np.float32)
        self.lib.dq_host_postprocess(q.ctypes.data, q.size, scale, zero_point, out.ctypes.data)
        return out
