"""Compiled TFLite models on the host (gcc build of the generated C) against LiteRT's BUILTIN_REF kernels.

The MLPerf ResNet-8 is compiled once per session (`divqat-tvm compile` path: compile_tflite → generate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.tflite_import import compile_tflite
from divqat_tvm.errors import CompileError

sys.path.insert(0, str(Path(__file__).parent))
import tflite_testmodels as tm  # noqa: E402
from test_tflite_import import LCG_EXPECTED, MLPERF, ZERO_EXPECTED, lcg_image, litert, litert_run, needs_mlperf  # noqa: E402


@pytest.fixture(scope="session")
def mlperf_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert MLPERF.is_file(), f"the MLPerf Tiny model is not at {MLPERF} (shared/models/ beside the repo)"
    out = tmp_path_factory.mktemp("tflite") / "mlperf_resnet8"
    compile_tflite(MLPERF, out, target="mps2-an500", core="cortex-m7")
    return out


@needs_mlperf
def test_mlperf_manifest(mlperf_build):
    m = json.loads((mlperf_build / "manifest.json").read_text())
    assert m["input"] == {"shape": [1, 32, 32, 3], "layout": "NHWC", "scale": 1.0, "zero_point": -128}
    assert m["output"]["kind"] == "probabilities" and m["output"]["zero_point"] == -128
    assert m["output"]["scale"] == 1.0 / 256 and m["requant"] == "fixed"
    assert m["source_model"]["sha256"] == "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415"
    # 16 TFLite operators; the first block's second conv runs with its residual ADD as one op (compiler/fuse.py)
    assert m["macs"] == 12_501_632 and len(m["ops"]) == 15
    assert [o["name"] for o in m["ops"] if o["kind"] == "conv2d_add"] == ["conv_2d_2+add_3"]
    assert m["arena_bytes"] <= 54_996  # TFLite Micro's arena for this model (../shared/models/README.md)
    assert m["arena_bytes"] == m["arena_bound_bytes"] <= 32_768  # two 32x32x16 activations (issue 14)


@needs_mlperf
def test_mlperf_host_readme_outputs(mlperf_build):
    hm = HostModel(mlperf_build)
    assert hm.run(lcg_image()).ravel().tolist() == LCG_EXPECTED
    assert hm.run(np.full((1, 32, 32, 3), -128, np.int8)).ravel().tolist() == ZERO_EXPECTED


@needs_mlperf
@pytest.mark.slow
def test_mlperf_host_bit_exact_with_litert_1000_inputs(mlperf_build):
    xs = np.random.default_rng(2026).integers(-128, 128, (1000, 32, 32, 3)).astype(np.int8)
    ours = HostModel(mlperf_build).run(xs)
    ref = litert_run(litert(MLPERF), xs[:, None])[:, 0]
    mismatches = int((ours != ref).sum())
    assert mismatches == 0
    assert len(np.unique(ref, axis=0)) > 100  # varied answers, not one constant vector


@pytest.mark.parametrize("seed", [0, 3])
def test_zoo_host_bit_exact_with_litert(tmp_path, seed):
    """Depthwise, SAME/VALID, RELU6, add, max pool, padded avg pool, FC, softmax β through the compiled C."""
    p = tmp_path / "zoo.tflite"
    p.write_bytes(tm.zoo_model(seed))
    out = tmp_path / "zoo"
    compile_tflite(p, out)
    assert "#define MODEL_OUTPUT_IS_PROBABILITIES 1\n" in (out / "model.h").read_text()  # softmax output
    xs = np.random.default_rng(seed).integers(-128, 128, (300, 9, 9, 3)).astype(np.int8)
    ours = HostModel(out).run(xs)
    ref = litert_run(litert(p), xs[:, None])[:, 0]
    assert int((ours != ref).sum()) == 0


@pytest.mark.parametrize("scale,beta", [(0.3, 1.0), (0.05, 2.0), (1.5, 1.0)])
def test_softmax_kernel_bit_exact_with_litert(tmp_path, scale, beta):
    p = tmp_path / "softmax.tflite"
    p.write_bytes(tm.softmax_model(scale, beta))
    out = tmp_path / "softmax"
    compile_tflite(p, out)
    rng = np.random.default_rng(5)
    xs = rng.integers(-128, 128, (600, 1, 1, 10)).astype(np.int8)
    xs[:200] = np.clip(rng.integers(-8, 9, (200, 1, 1, 10)) + rng.integers(-100, 100, (200, 1, 1, 1)), -128, 127)
    ours = HostModel(out).run(xs)
    assert int((ours != litert_run(litert(p), xs[:, None])[:, 0]).sum()) == 0


def test_float_requant_is_refused_for_tflite(tmp_path):
    p = tmp_path / "softmax.tflite"
    p.write_bytes(tm.softmax_model(0.3))
    with pytest.raises(CompileError, match="--requant fixed"):
        compile_tflite(p, tmp_path / "out", requant="float")


@needs_mlperf
def test_mlperf_meta_maps_unit_images_to_raw_pixels(mlperf_build):
    """meta.normalization (mean 0, std 1/255) takes [0, 1] images to the model's input space, raw pixels:
    every pixel value p/255 arrives on the device as int8 p − 128 (the TFLite model's own convention)."""
    from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle, quantize_input

    m = json.loads((mlperf_build / "manifest.json").read_text())
    norm = m["meta"]["normalization"]
    assert m["meta"]["input_shape"] == [3, 32, 32] and m["meta"]["num_classes"] == 10
    p = np.arange(256, dtype=np.float32)
    v = np.zeros((256, 3, 32, 32), np.float32) + (p / np.float32(255))[:, None, None, None]
    x = (v - np.float32(norm["mean"][0])) / np.float32(norm["std"][0])  # what load_dataset(normalization=...) computes
    q = quantize_input(x, m)
    assert np.array_equal(q[:, 0].astype(np.int64), np.arange(256) - 128)
    oracle = TvmHostOracle(mlperf_build)
    probs = oracle.query(x[:8])
    ref = litert_run(
        litert(MLPERF), (np.arange(8)[:, None, None, None] - 128 + np.zeros((8, 32, 32, 3))).astype(np.int8)[:, None]
    )[:, 0]
    np.testing.assert_array_equal(oracle.last_logits, ref)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc")
def test_compile_command_accepts_tflite(tmp_path, capsys):
    """`divqat-tvm compile MODEL.tflite --target cortex-m7`: the zoo model through the CLI, built for the core."""
    from divqat_tvm.cli import main

    p = tmp_path / "zoo.tflite"
    p.write_bytes(tm.zoo_model(1))
    out = tmp_path / "zoo_m7"
    assert main(["compile", str(p), "--target", "cortex-m7", "--out", str(out)]) in (0, None)
    m = json.loads((out / "manifest.json").read_text())
    assert m["output"]["kind"] == "probabilities" and m["input"]["layout"] == "NHWC" and m["core"] == "cortex-m7"
    assert (out / "footprint.json").is_file()
    assert main(
        ["compile", str(p), "--target", "cortex-m7", "--out", str(tmp_path / "f"), "--requant", "float"]
    ) not in (0, None)
    assert "--requant fixed" in capsys.readouterr().err
