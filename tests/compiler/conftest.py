"""Session-scoped compiled builds shared by the compiler tests (compiling and gcc are the slow parts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

N_INPUTS = 1000
INPUT_SHAPE = (3, 16, 16)


@dataclass
class CompiledModel:
    """One source model compiled with both requantization schemes."""

    name: str
    onnx_path: Path
    builds: dict[str, Path]
    student: Any = None  # the torch fake-quant student for registry exports


def _compile_both(onnx_path: Path, out: Path) -> dict[str, Path]:
    from divqat_tvm.compiler.generate import compile_onnx

    builds = {}
    for scheme in ("fixed", "float"):
        compile_onnx(onnx_path, out / scheme, requant=scheme)
        builds[scheme] = out / scheme
    return builds


@pytest.fixture(scope="session")
def compiler_models(tmp_path_factory) -> dict[str, CompiledModel]:
    """quantize_static models (with and without AveragePool) and the registry models through our export."""
    import compiler_models as cm

    root = tmp_path_factory.mktemp("compiler_builds")
    models: dict[str, CompiledModel] = {}
    for name, avg in (("qs", False), ("qs_avgpool", True)):
        p = cm.quantize_static_model(root / f"{name}.onnx", INPUT_SHAPE, avg_pool=avg)
        models[name] = CompiledModel(name, p, _compile_both(p, root / name))
    from divqat_tvm.models import model_names

    for arch in ("resnet8", "vgg", "dscnn"):
        if arch not in model_names():
            continue
        p, student = cm.registry_export(root / f"{arch}.onnx", arch, INPUT_SHAPE)
        models[arch] = CompiledModel(arch, p, _compile_both(p, root / arch), student)
    return models


@pytest.fixture(scope="session")
def float_inputs() -> np.ndarray:
    return np.random.default_rng(1234).standard_normal((N_INPUTS, *INPUT_SHAPE)).astype(np.float32)


class _Outputs:
    """Memoised int8 outputs (host build, numpy reference, onnxruntime) per model and scheme."""

    def __init__(self, models: dict[str, CompiledModel], x: np.ndarray) -> None:
        self.models, self.x, self._memo = models, x, {}

    def _get(self, key, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def host(self, name: str, scheme: str) -> np.ndarray:
        from divqat_tvm.compiler.host_model import HostModel

        def run():
            h = HostModel(self.models[name].builds[scheme])
            return h.run(h.quantize_input(self.x)).astype(np.int64)

        return self._get(("host", name, scheme), run)

    def reference(self, name: str, scheme: str) -> np.ndarray:
        from divqat_tvm.compiler.host_model import HostModel
        from divqat_tvm.compiler.onnx_import import import_onnx
        from divqat_tvm.compiler.reference import run_reference

        def run():
            h = HostModel(self.models[name].builds[scheme])
            return run_reference(import_onnx(self.models[name].onnx_path), h.quantize_input(self.x), scheme).astype(
                np.int64
            )

        return self._get(("ref", name, scheme), run)

    def onnxruntime(self, name: str) -> np.ndarray:
        import json

        from divqat_tvm.compiler import ort_reference

        def run():
            m = self.models[name]
            out = json.loads((m.builds["float"] / "manifest.json").read_text())["output"]
            return ort_reference.int8_outputs(
                ort_reference.session(m.onnx_path), self.x, out["scale"], out["zero_point"]
            )

        return self._get(("ort", name), run)


@pytest.fixture(scope="session")
def outputs(compiler_models, float_inputs) -> _Outputs:
    return _Outputs(compiler_models, float_inputs)
