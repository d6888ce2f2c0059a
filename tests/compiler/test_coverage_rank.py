"""Issue #15 (1): inputs of any rank. The MLPerf Tiny anomaly-detection autoencoder (AD01: ten FULLY_CONNECTED
layers on an int8 [1, 640] input) compiled and run on the host and under QEMU, equal to LiteRT's BUILTIN_REF."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.compiler.tflite_import import compile_tflite, import_tflite

sys.path.insert(0, str(Path(__file__).parent))
from test_tflite_import import litert, litert_run  # noqa: E402

AD01 = Path("/work/shared/models/ad01_int8.tflite")
if not AD01.is_file():
    AD01 = Path(__file__).resolve().parents[3] / "shared" / "models" / "ad01_int8.tflite"
needs_ad01 = pytest.mark.needs_tools(needs_files=(AD01,))
BOARDS = {"mps2-an500": "cortex-m7", "mps2-an386": "cortex-m4", "mps3-an547": "cortex-m55"}


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, 640)).astype(np.int8)


@pytest.fixture(scope="module")
def ad01_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ad01") / "ad01"
    compile_tflite(AD01, out, target="mps2-an500", core="cortex-m7")
    return out


@needs_ad01
def test_ad01_imports_as_ten_dense_layers():
    g = import_tflite(AD01)
    assert [op.kind for op in g.ops] == ["dense"] * 10
    assert g.input_tensor.shape == (1, 640) and g.output_tensor.shape == (1, 640)


@needs_ad01
def test_ad01_manifest(ad01_build):
    m = json.loads((ad01_build / "manifest.json").read_text())
    assert m["input"]["shape"] == [1, 640] and m["output"]["shape"] == [1, 640]
    assert m["meta"]["input_shape"] == [640] and m["output"]["kind"] == "logits"


@needs_ad01
def test_ad01_host_bit_exact_with_litert_200_inputs(ad01_build):
    xs = _inputs(200, 15)
    ours = HostModel(ad01_build).run(xs)
    ref = litert_run(litert(AD01), xs[:, None])[:, 0]
    assert ours.shape == (200, 640)
    assert int((ours != ref).sum()) == 0
    assert len(np.unique(ref, axis=0)) == 200


@needs_ad01
@pytest.mark.emulator
@pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")
@pytest.mark.parametrize("board", list(BOARDS))
def test_ad01_firmware_bit_exact_with_litert(tmp_path, board):
    from divqat_tvm.oracle.backend_device import QemuOracle

    out = tmp_path / "ad01"
    compile_tflite(AD01, out, target=board, core=BOARDS[board])
    xs = _inputs(20, sum(map(ord, board)))
    with QemuOracle(out, board=board, transfer="shared", instances=1) as dev:
        res = dev.run_int8(xs)
    ours = np.stack([r.logits for r in res])
    ref = litert_run(litert(AD01), xs[:, None])[:, 0]
    assert int((ours != ref).sum()) == 0
