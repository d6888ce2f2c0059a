"""The host twin (model C + the firmware's post-processing C) against independent references."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_reference

from divqat_tvm.defenses import DCP, ReverseSigmoid
from divqat_tvm.defenses.spec import DefenseSpec, from_postprocessor
from divqat_tvm.defenses.spec import parse_defense_spec as parse_defense
from divqat_tvm.device.host_twin import HostTwin, conv_shim, host_cpu, resolve_host_build
from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle, quantize_input

torch.set_num_threads(1)


def test_host_twin_int8_matches_numpy_reference(tiny_build):
    twin = HostTwin(tiny_build)
    x = np.random.default_rng(0).integers(-128, 128, (500, 16)).astype(np.int8)
    logits, probs = twin.infer(x)
    np.testing.assert_array_equal(logits, tiny_reference(x))
    assert len(np.unique(logits.argmax(1))) >= 3  # the fixture is not degenerate


def test_softmax_matches_float64_reference(tiny_build):
    twin = HostTwin(tiny_build)
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = rng.integers(-128, 128, 10).astype(np.int8)
        scale, zp = float(np.float32(rng.uniform(0.01, 0.3))), int(rng.integers(-20, 20))
        p = twin.postprocess(q, scale, zp)
        ref = torch.softmax(torch.tensor((q.astype(np.float64) - zp) * scale), 0).numpy()
        np.testing.assert_allclose(p, ref, rtol=2e-6, atol=1e-7)
        assert abs(float(p.sum(dtype=np.float64)) - 1.0) < 1e-5


@pytest.mark.parametrize(
    "spec",
    [
        "rs:beta=0.5,gamma=0.1",
        "rs:beta=1.28,gamma=0.1",
        "dcp:beta=0.5,gamma=0.1,nu=1000",
        "dcp:beta=0.9,gamma=0.1,nu=1000",
    ],
)
def test_c_defences_match_python_twins(tiny_build, spec):
    twin, plain = HostTwin(tiny_build, spec), HostTwin(tiny_build)
    py = {"rs": ReverseSigmoid, "dcp": DCP}[spec.split(":")[0]](
        **{k: float(v) for k, v in (kv.split("=") for kv in spec.split(":")[1].split(","))}
    )
    rng = np.random.default_rng(2)
    changed = 0
    for _ in range(200):
        q = rng.integers(-128, 128, 10).astype(np.int8)
        p0 = plain.postprocess(q, 0.05, 0)
        p1 = twin.postprocess(q, 0.05, 0)
        np.testing.assert_allclose(p1, py(p0.astype(np.float64)), rtol=1e-4, atol=2e-6)
        changed += not np.array_equal(p0, p1)
    assert changed > 0


def test_defense_spec_parsing_and_c_literals():
    d = parse_defense("dcp:beta=0.5,gamma=0.1,nu=1000")
    assert d == DefenseSpec("dcp", 0.5, 0.1, 1000.0) and d.tag == "dcp-b0.5-g0.1-n1000"
    assert parse_defense(d.spec()) == d
    assert "-DDQ_BETA=0.0f" in parse_defense(None).c_defines()
    assert from_postprocessor(ReverseSigmoid(0.25, 0.1)) == DefenseSpec("rs", 0.25, 0.1)
    for bad in ["xx:beta=1", "rs:gamma=0.1", "rs:beta=abc", "rs:beta=1,nu=3", "rs:beta=-1"]:
        with pytest.raises(DivqatError):
            parse_defense(bad)


def test_tvm_host_oracle_counts_and_quantizes(tiny_build):
    o = TvmHostOracle(tiny_build, budget=30)
    x = np.random.default_rng(3).uniform(-1, 1, (20, 1, 4, 4)).astype(np.float32)
    p = o.query(x)
    assert p.shape == (20, 4) and o.queries == 20
    np.testing.assert_array_equal(o.last_logits, tiny_reference(quantize_input(x, o.manifest)))
    with pytest.raises(DivqatError):
        o.query(x)  # 40 > budget 30


# ---- the native host build (issue 17): same bytes as the portable build, threads, choice of build ----

ROOT = Path(__file__).resolve().parents[2]
SHARED_MODELS = ROOT.parent / "shared" / "models"
MLPERF_TINY = ["mlperf-tiny-resnet8-int8", "kws_ref_model", "vww_96_int8", "ad01_int8"]


def _zoo_build(root: Path, seed: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import tflite_testmodels as tm

    from divqat_tvm.compiler.tflite_import import compile_tflite

    p = root / f"zoo{seed}.tflite"
    p.write_bytes(tm.zoo_model(seed))
    compile_tflite(p, root / f"zoo{seed}", target="mps2-an500", core="cortex-m7")
    return root / f"zoo{seed}"


@pytest.fixture(scope="module")
def zoo_builds(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two TFLite zoo models (conv with fast and exact epilogues, odd channel counts, depthwise, add, FC)."""
    root = tmp_path_factory.mktemp("zoo")
    return [_zoo_build(root, seed) for seed in (0, 3)]


def _same_answers(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1].view(np.uint32), b[1].view(np.uint32))


def test_host_build_choice_and_refusals(tiny_build):
    assert resolve_host_build("portable") == "portable" and resolve_host_build("native") == "native"
    x86_avx2 = host_cpu()["machine"] == "x86_64" and "avx2" in host_cpu()["flags"]
    assert resolve_host_build("auto") == ("native" if x86_avx2 else "portable")
    with pytest.raises(DivqatError, match="Unknown host build"):
        HostTwin(tiny_build, host_build="fast")
    with pytest.raises(DivqatError, match="at least 1"):
        HostTwin(tiny_build, threads=0)
    assert HostTwin(tiny_build, host_build="portable").describe() == "portable C, 1 thread"


@pytest.mark.slow
def test_conv_shim_overrides_every_conv_layer(zoo_builds):
    for build in zoo_builds:
        manifest = json.loads((build / "manifest.json").read_text())
        convs = {op["function"] for op in manifest["ops"] if op["kernel"]["name"] == "divqat_conv_s8"}
        shim = conv_shim((build / "kernels.c").read_text())
        assert (
            convs
            and {
                ln.split("(")[0].split()[-1]
                for ln in shim.splitlines()
                if "dq_host_conv_s8(" in ln and ln.startswith("void model")
            }
            == convs
        )
        twin = HostTwin(build, host_build="native")
        if "avx512_vnni" in host_cpu()["flags"]:
            assert twin.describe() == "native (avx512-vnni conv), 1 thread"
    epilogues = {
        op["kernel"]["variant"]["epilogue"]
        for b in zoo_builds
        for op in json.loads((b / "manifest.json").read_text())["ops"]
        if op["kernel"]["name"] == "divqat_conv_s8"
    }
    assert "fast" in epilogues and len(epilogues) > 1  # the vector and the scalar epilogue are both exercised


@pytest.mark.slow
@pytest.mark.skipif(host_cpu()["machine"] != "x86_64", reason="the host SIMD kernels are x86-64 only")
def test_native_avx2_and_generic_builds_equal_portable_on_10000_inputs(zoo_builds):
    for build in zoo_builds:
        portable = HostTwin(build, host_build="portable")
        x = np.random.default_rng(17).integers(-128, 128, (10_000, portable.input_size), dtype=np.int8)
        ref = portable.infer(x)
        assert len(np.unique(ref[0], axis=0)) > 1000  # varied answers, not a constant vector
        # VNNI here, AVX2, and the portable fallback inside host_x86.c (AVX2 only where this CPU can run it)
        marches = ("native", "haswell", "x86-64") if "avx2" in host_cpu()["flags"] else ("native", "x86-64")
        for march in marches:
            _same_answers(HostTwin(build, host_build="native", march=march).infer(x), ref)


@pytest.mark.slow
def test_threads_answer_in_order_and_bit_identical(zoo_builds):
    one = HostTwin(zoo_builds[0], host_build="native")
    three = HostTwin(zoo_builds[0], host_build="native", threads=3)
    assert three.describe().endswith("3 threads") and len({str(p) for p in three._copies(3)}) == 3
    x = np.random.default_rng(4).integers(-128, 128, (1001, one.input_size), dtype=np.int8)
    _same_answers(three.infer(x), one.infer(x))
    _same_answers(three.infer(x[:2]), one.infer(x[:2]))  # fewer inputs than threads
    three.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", MLPERF_TINY)
@pytest.mark.needs_tools(needs_files=tuple(SHARED_MODELS / f"{m}.tflite" for m in MLPERF_TINY))
def test_mlperf_tiny_native_equals_portable(tmp_path, name):
    """500 inputs per model here; scripts/check_host_twin.py does 10,000 (and QEMU) for the README."""
    from divqat_tvm.compiler.tflite_import import compile_tflite

    compile_tflite(SHARED_MODELS / f"{name}.tflite", tmp_path / name, target="mps2-an500", core="cortex-m7")
    portable = HostTwin(tmp_path / name, host_build="portable")
    x = np.random.default_rng(7).integers(-128, 128, (500, portable.input_size), dtype=np.int8)
    _same_answers(HostTwin(tmp_path / name, host_build="native").infer(x), portable.infer(x))


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
def test_native_build_equals_the_firmware_under_qemu(zoo_builds):
    from divqat_tvm.oracle.backend_device import QemuOracle

    build = zoo_builds[1]
    native = HostTwin(build, host_build="native")
    x = np.random.default_rng(9).integers(-128, 128, (300, native.input_size), dtype=np.int8)
    with QemuOracle(build, "mps2-an500", instances=2) as dev:
        res = dev.run_int8(x)
    dev_answers = (
        np.stack([r.logits for r in res]).reshape(len(x), -1),
        np.stack([r.probs for r in res]).astype(np.float32),
    )
    _same_answers(native.infer(x), dev_answers)
