"""Any class count up to the wire's u16 (issue #13): the C defences run in place (no 256-class scratch
buffer, which used to make them silently return), and a model with more classes than DQ_MAX_CLASSES is
refused by the build with one line naming the limit."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE, needs_emulator

from divqat_tvm.defenses import DCP, DefenseSpec, ReverseSigmoid
from divqat_tvm.device.build import WARNING_CFLAGS, build_firmware, protocol_constant
from divqat_tvm.device.emulator import QemuRunner
from divqat_tvm.device.host_twin import HostTwin
from divqat_tvm.errors import CompileError

ROOT = Path(__file__).resolve().parents[2]
F32P = ctypes.POINTER(ctypes.c_float)
I8P = ctypes.POINTER(ctypes.c_int8)


def _postprocess_lib(tmp: Path, spec: DefenseSpec) -> ctypes.CDLL:
    so = tmp / f"libpp-{spec.tag or 'none'}.so"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-ffp-contract=off",
            *WARNING_CFLAGS,
            *spec.c_defines(),
            f"-I{ROOT / 'firmware' / 'include'}",
            str(ROOT / "firmware" / "src" / "postprocess.c"),
            "-o",
            str(so),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(so))
    lib.dq_postprocess.argtypes = [I8P, ctypes.c_uint32, ctypes.c_float, ctypes.c_int32, F32P]
    return lib


@pytest.mark.needs_tools("gcc")
@pytest.mark.parametrize("k", [257, 1000, 5000])
@pytest.mark.parametrize("spec", ["rs:beta=0.5", "dcp:beta=0.9"])
def test_c_defences_work_beyond_256_classes(tmp_path, k, spec):
    s = DefenseSpec.parse(spec)
    plain, defended = _postprocess_lib(tmp_path, DefenseSpec()), _postprocess_lib(tmp_path, s)
    q = np.random.default_rng(k).integers(-128, 128, k, dtype=np.int8)
    q[7] = 127  # one confident class
    p0, p1 = np.zeros(k, np.float32), np.zeros(k, np.float32)
    for lib, out in ((plain, p0), (defended, p1)):
        lib.dq_postprocess(q.ctypes.data_as(I8P), k, 0.25, 0, out.ctypes.data_as(F32P))
    twin = ReverseSigmoid(s.beta, s.gamma) if s.kind == "rs" else DCP(s.beta, s.gamma, s.nu)
    np.testing.assert_allclose(p1, twin(p0[None])[0], atol=2e-6)
    assert not np.allclose(p1, p0, atol=1e-4)  # the defence ran (it used to return untouched above 256)
    assert abs(float(p1.sum()) - 1.0) < 1e-4


def _wide_model(tmp_path: Path, classes: int) -> Path:
    """A compiled-model directory (docs/contracts.md) whose model writes `classes` int8 outputs."""
    d = tmp_path / f"wide{classes}"
    d.mkdir()
    (d / "model.h").write_text(f"""#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define MODEL_INPUT_SIZE 16
#define MODEL_OUTPUT_SIZE {classes}
#define MODEL_INPUT_SCALE 0.0078125f
#define MODEL_INPUT_ZERO_POINT 0
#define MODEL_OUTPUT_SCALE 0.125f
#define MODEL_OUTPUT_ZERO_POINT -5
#define MODEL_ARENA_BYTES 0
#define MODEL_NUM_OPS 1
extern const char *const model_op_names[];
int model_run(const int8_t *in, int8_t *out);
#endif
""")
    (d / "model.c").write_text("""#include "model.h"
#ifndef DIVQAT_OP_BEGIN
#define DIVQAT_OP_BEGIN(i)
#endif
#ifndef DIVQAT_OP_END
#define DIVQAT_OP_END(i)
#endif
const char *const model_op_names[MODEL_NUM_OPS] = {"wide"};
int model_run(const int8_t *in, int8_t *out) {
    DIVQAT_OP_BEGIN(0);
    for (int32_t i = 0; i < MODEL_OUTPUT_SIZE; i++) out[i] = (int8_t)(((int32_t)in[i % MODEL_INPUT_SIZE] + 7 * i) % 128);
    DIVQAT_OP_END(0);
    return 0;
}
""")
    (d / "kernels.c").write_text(
        "/* no kernels: model.c computes its outputs itself */\ntypedef int wide_no_kernels;\n"
    )
    m = json.loads((FIXTURE / "manifest.json").read_text())
    m.update(name=f"wide{classes}", arena_bytes=0, ops=[{"kind": "test", "macs": 0, "name": "wide"}])
    m["output"] = {"layout": "NC", "scale": 0.125, "shape": [1, classes], "zero_point": -5}
    (d / "manifest.json").write_text(json.dumps(m))
    return d


@pytest.mark.emulator
@needs_emulator
def test_firmware_with_1000_classes_defends_every_answer(tmp_path):
    build = _wide_model(tmp_path, 1000)
    spec = "rs:beta=0.5,gamma=0.1"
    x = np.random.default_rng(0).integers(-128, 128, 16).astype(np.int8)
    _, plain = HostTwin(build).infer(x[None])
    _, host = HostTwin(build, spec).infer(x[None])
    with QemuRunner(build_firmware(build, "mps2-an386", spec)) as r:
        res = r.infer(x)
    assert res.status == 0 and len(res.probs) == 1000
    np.testing.assert_array_equal(res.probs.view(np.uint32), host[0].view(np.uint32))
    np.testing.assert_allclose(res.probs, ReverseSigmoid(0.5, 0.1)(plain)[0], atol=2e-6)
    assert not np.allclose(res.probs, plain[0], atol=1e-5)


def test_more_classes_than_the_wire_holds_is_refused_by_the_build(tmp_path):
    limit = protocol_constant("DQ_MAX_CLASSES")
    assert limit == 65535
    build = tmp_path / "huge"
    shutil.copytree(FIXTURE, build)
    m = json.loads((build / "manifest.json").read_text())
    m["output"]["shape"] = [1, limit + 1]
    (build / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(
        CompileError, match=r"65536 output values, more than the firmware's limit of 65535 classes"
    ) as e:
        build_firmware(build, "mps2-an385")
    assert "\n" not in e.value.problem
