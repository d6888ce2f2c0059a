"""The compiled MLPerf ResNet-8 (TFLite) as firmware under QEMU on Cortex-M7, M4 and M55: bit-exact with
LiteRT's BUILTIN_REF kernels, the README's reference outputs, and the oracle's probability path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kernel_cores import needs_emulator  # noqa: E402
from test_tflite_import import LCG_EXPECTED, MLPERF, ZERO_EXPECTED, lcg_image, litert, litert_run  # noqa: E402

pytestmark = [pytest.mark.emulator, needs_emulator, pytest.mark.needs_tools(needs_files=(MLPERF,))]

BOARDS = {"mps2-an500": "cortex-m7", "mps2-an386": "cortex-m4", "mps3-an547": "cortex-m55"}


@pytest.fixture(scope="module")
def mlperf_fw_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from divqat_tvm.compiler.tflite_import import compile_tflite

    out = tmp_path_factory.mktemp("tflite_qemu") / "mlperf_resnet8"
    compile_tflite(MLPERF, out, target="mps2-an500", core="cortex-m7")
    return out


@pytest.mark.parametrize("board", list(BOARDS))
def test_mlperf_firmware_bit_exact_with_litert(mlperf_fw_build, board):
    from divqat_tvm.oracle.backend_device import QemuOracle

    rng = np.random.default_rng(sum(map(ord, board)))
    n = 100 if board == "mps2-an500" else 40
    xs = np.concatenate(
        [lcg_image(), np.full((1, 32, 32, 3), -128, np.int8), rng.integers(-128, 128, (n, 32, 32, 3)).astype(np.int8)]
    )
    with QemuOracle(mlperf_fw_build, board=board, transfer="shared", instances=2) as dev:
        res = dev.run_int8(xs.reshape(len(xs), -1))
    out = np.stack([r.logits for r in res])
    assert out[0].tolist() == LCG_EXPECTED and out[1].tolist() == ZERO_EXPECTED
    ref = litert_run(litert(MLPERF), xs[:, None])[:, 0]
    assert int((out != ref).sum()) == 0
    # the model's output is already a softmax: the firmware dequantizes and normalises it, no second softmax
    probs = np.stack([r.probs for r in res])
    q = (out.astype(np.float32) + 128) / 256
    expected = q / q.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)


def test_oracle_takes_raw_pixels(mlperf_fw_build):
    """The oracle's float input space for this model is raw pixels 0..255 (scale 1, zero point −128) in
    [N, C, H, W]; it sends int8 = pixel − 128 in NHWC, so tvm-host and the firmware agree with LiteRT."""
    from divqat_tvm.oracle import open_oracle

    pixels = np.random.default_rng(9).integers(0, 256, (6, 3, 32, 32)).astype(np.float32)
    host = open_oracle(f"tvm-host:{mlperf_fw_build}")
    with open_oracle(f"qemu:{mlperf_fw_build}@mps2-an500") as dev:
        p_dev = dev.query(pixels)
    p_host = host.query(pixels)
    np.testing.assert_array_equal(p_dev.view(np.uint32), p_host.view(np.uint32))
    nhwc = (pixels.transpose(0, 2, 3, 1) - 128).astype(np.int8)
    ref = litert_run(litert(MLPERF), nhwc[:, None])[:, 0].astype(np.float32) + 128
    np.testing.assert_array_equal(p_host.argmax(axis=1), (ref / ref.sum(axis=1, keepdims=True)).argmax(axis=1))
    assert host.queries == 6 and p_host.shape == (6, 10)
