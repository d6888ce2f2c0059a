"""The compiled artifact keeps docs/contracts.md: model.h macros, hooks, manifest fields, plain C; the
arena equals the independent liveness bound; the MakePackedAPI replacement is scoped and pinned."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.onnx_import import import_onnx

REPO = Path(__file__).resolve().parents[2]


def _arena_bound_module():
    spec = importlib.util.spec_from_file_location("arena_bound", REPO / "scripts" / "arena_bound.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["qs", "qs_avgpool", "resnet8", "vgg", "dscnn"])
def test_arena_equals_independent_liveness_bound(compiler_models, name) -> None:
    if name not in compiler_models:
        pytest.skip(f"registry model {name} not available")
    m = compiler_models[name]
    ab = _arena_bound_module()
    for build in m.builds.values():
        manifest = json.loads((build / "manifest.json").read_text())
        # the graph as lowered (NHWC inside by default) and the hand-written kernels' scratch
        bound, _ = ab.ir_peak_bytes(*ab.compiled_graph(import_onnx(m.onnx_path), manifest))
        assert manifest["arena_bytes"] == bound
        assert manifest["tvm_storage_bytes"] >= bound
        assert f"#define MODEL_ARENA_BYTES {bound}\n" in (build / "model.h").read_text()


def test_model_h_and_manifest_contract(compiler_models) -> None:
    build = compiler_models["qs"].builds["fixed"]
    h = (build / "model.h").read_text()
    for macro in (
        "INPUT_SIZE",
        "OUTPUT_SIZE",
        "INPUT_SCALE",
        "INPUT_ZERO_POINT",
        "OUTPUT_SCALE",
        "OUTPUT_ZERO_POINT",
        "OUTPUT_IS_PROBABILITIES",
        "ARENA_BYTES",
        "NUM_OPS",
    ):
        assert re.search(rf"^#define MODEL_{macro} ", h, re.M), macro
    assert (
        "#define MODEL_OUTPUT_IS_PROBABILITIES 0\n" in h
    )  # logits (softmax models: tests/compiler/test_tflite_host.py)
    assert "int model_run(const int8_t *in, int8_t *out);" in h
    assert "extern const char *const model_op_names[];" in h
    m = json.loads((build / "manifest.json").read_text())
    for key in (
        "format_version",
        "name",
        "prefix",
        "target",
        "core",
        "requant",
        "input",
        "output",
        "ops",
        "macs",
        "arena_bytes",
        "weight_bytes",
        "tvm_version",
        "source_model",
        "meta",
    ):
        assert key in m, key
    assert m["requant"] == "fixed" and m["input"]["layout"] == "NCHW" and m["input"]["shape"] == [1, 3, 16, 16]
    assert m["output"]["kind"] == "logits"
    assert len(m["source_model"]["sha256"]) == 64
    n_ops = int(re.search(r"#define MODEL_NUM_OPS (\d+)", h).group(1))
    assert n_ops == len(m["ops"]) > 0
    c = (build / "model.c").read_text()
    assert c.count("DIVQAT_OP_BEGIN(") - 1 == n_ops and c.count("DIVQAT_OP_END(") - 1 == n_ops
    assert re.search(r"static uint8_t model_arena\[\d+\] __attribute__\(\(aligned\(16\)\)\)", c)
    assert "static const int8_t model_c0[" in c
    assert m["macs"] == sum(op["macs"] for op in m["ops"]) > 0


def test_kernels_are_plain_c_with_pointer_arguments(compiler_models, tmp_path) -> None:
    build = compiler_models["qs"].builds["float"]
    k = (build / "kernels.c").read_text()
    for banned in ("tvm/", "TVMBackendAllocWorkspace", "TVMFFI", "__tvm_ffi", "DLTensor", "void* args"):
        assert banned not in k, banned
    assert re.search(r"^TVM_DLL void model_k\d+_conv2d\(int8_t\* \w+, int8_t\* \w+, int32_t\* \w+", k, re.M)
    for src in ("model.c", "kernels.c"):
        proc = subprocess.run(
            [
                "gcc",
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-c",
                str(build / src),
                "-I",
                str(build),
                "-o",
                str(tmp_path / (src + ".o")),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr


def test_profiling_hooks_are_called_once_per_op(compiler_models, tmp_path) -> None:
    """A firmware-style includer defines the hooks; model_run calls BEGIN/END in order for every op."""
    from divqat_tvm.compiler.host_model import HostModel

    build = compiler_models["qs"].builds["fixed"]
    hooks = tmp_path / "hooks.c"
    hooks.write_text(
        "#include <stdint.h>\nint trace[64]; int n_trace;\n"
        "#define DIVQAT_OP_BEGIN(i) (trace[n_trace++] = (i))\n#define DIVQAT_OP_END(i) (trace[n_trace++] = -1 - (i))\n"
        f'#include "{build / "model.c"}"\n'
    )
    import shutil

    lib_dir = tmp_path / "b"
    shutil.copytree(build, lib_dir)
    manifest = json.loads((lib_dir / "manifest.json").read_text())
    manifest["sources"] = ["kernels.c"]
    (lib_dir / "manifest.json").write_text(json.dumps(manifest))
    host = HostModel(lib_dir, extra_sources=(hooks,))
    host.run(np.zeros((1, 3, 16, 16), np.int8))
    import ctypes

    n = ctypes.c_int.in_dll(host.lib, "n_trace").value
    trace = list((ctypes.c_int * 64).in_dll(host.lib, "trace"))[:n]
    k = len(manifest["ops"])
    assert trace == [v for i in range(k) for v in (i, -1 - i)]


def test_unpacked_api_replacement_is_scoped_and_version_pinned() -> None:
    import tvm
    from tvm import tirx

    from divqat_tvm.compiler import lower

    original = tirx.transform.MakePackedAPI
    with lower._unpacked_api():
        assert tirx.transform.MakePackedAPI is not original
    assert tirx.transform.MakePackedAPI is original
    assert tvm.__version__.startswith(lower.PINNED_TVM)
    assert lower.check_tvm_version() == tvm.__version__


def test_host_model_caches_its_library(compiler_models) -> None:
    from divqat_tvm.compiler.host_model import HostModel

    build = compiler_models["qs"].builds["fixed"]
    a = HostModel(build)
    mtime = a.library_path.stat().st_mtime_ns
    b = HostModel(build)
    assert b.library_path == a.library_path and b.library_path.stat().st_mtime_ns == mtime


def test_compile_records_target_core_and_export_meta(compiler_models, tmp_path) -> None:
    from divqat_tvm.compiler.api import compile_model

    if "vgg" not in compiler_models:
        pytest.skip("registry model vgg not available")
    cm = compile_model(compiler_models["vgg"].onnx_path, "mps2-an386", tmp_path / "vgg", arm=False)
    manifest, footprint = cm.manifest, cm.footprint
    assert footprint is None
    assert (manifest["target"], manifest["core"], manifest["name"]) == ("mps2-an386", "cortex-m4", "vgg")
    assert manifest["meta"]["arch"] == "vgg"
    on_disk = json.loads((tmp_path / "vgg" / "manifest.json").read_text())
    assert on_disk["meta"] == {"arch": "vgg"} and on_disk["target"] == "mps2-an386"
