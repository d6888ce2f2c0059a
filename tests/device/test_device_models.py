"""Registry models compiled by the compiler (QDQ ONNX -> C), run as firmware under QEMU: bit-exact with the
host build on the M7 (>= 200 inputs per model) and on the M3/M4/M33/M55 machines; top-1 agreement with the
torch student; a DivQAT student's cost next to a QAT student's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_emulator

from divqat_tvm.compiler.generate import compile_onnx
from divqat_tvm.compiler.host_model import HostModel
from divqat_tvm.device.build import build_firmware
from divqat_tvm.models import build_model, model_names
from divqat_tvm.oracle.backend_device import QemuOracle
from divqat_tvm.oracle.backend_tvm_host import TvmHostOracle, quantize_input
from divqat_tvm.quant import DivQATConfig, QuantConfig, export_onnx, quantize_model

pytestmark = [pytest.mark.emulator, pytest.mark.slow, needs_emulator]
torch.set_num_threads(1)

SHAPE = (1, 8, 8)  # small inputs keep every registry model at < 1 M MACs
CLASSES = 10


def _compile(student: torch.nn.Module, out: Path) -> Path:
    onnx_path = export_onnx(student.eval(), out.with_suffix(".onnx"), SHAPE)
    compile_onnx(onnx_path, out, requant="fixed", target="cortex-m7", core="cortex-m7")
    return out


@pytest.fixture(scope="session")
def registry_builds(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Every registry model, PTQ-calibrated on random data and compiled (one build per session)."""
    root = tmp_path_factory.mktemp("registry")
    out = {}
    for name in model_names():
        torch.manual_seed(0)
        model = build_model(name, SHAPE[0], CLASSES, SHAPE[1]).eval()
        calib = [torch.randn(16, *SHAPE) for _ in range(4)]
        student = quantize_model(model, QuantConfig(method="ptq", calibration_batches=4), calibration=calib).eval()
        out[name] = (_compile(student, root / name), student)
    return out


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("name", model_names())
def test_registry_model_on_m7_bit_exact_and_agrees_with_torch(registry_builds, name):
    build_dir, student = registry_builds[name]
    x = _inputs(200, seed=1)
    host = TvmHostOracle(build_dir)
    with QemuOracle(build_dir, board="mps2-an500", instances=2) as dev:
        p_dev = dev.query(x)
        logits = np.stack([r.logits for r in dev.last_results])
    np.testing.assert_array_equal(_bits(p_dev), _bits(host.query(x)))
    # the compiler's own host build (HostModel) gives the same int8 outputs
    np.testing.assert_array_equal(
        logits, HostModel(build_dir).run(quantize_input(x, host.manifest)).reshape(logits.shape)
    )
    with torch.no_grad():
        ref = student(torch.from_numpy(x)).argmax(1).numpy()
    agree = float(np.mean(ref == p_dev.argmax(1)))
    assert agree >= 0.9, f"top-1 agreement with the torch student only {agree:.3f}"


@pytest.mark.parametrize("board", ["mps2-an385", "mps2-an386", "mps2-an505", "mps3-an547"])
def test_registry_models_on_m3_m4_m33_m55(registry_builds, board):
    x = _inputs(12, seed=2)
    for name, (build_dir, _) in registry_builds.items():
        with QemuOracle(build_dir, board=board, instances=1) as dev:
            p = dev.query(x)
            logits = np.stack([r.logits for r in dev.last_results])
        host = TvmHostOracle(build_dir)
        np.testing.assert_array_equal(_bits(p), _bits(host.query(x)), err_msg=f"{name} on {board}")
        np.testing.assert_array_equal(logits, host.last_logits)


def test_divqat_student_costs_what_a_qat_student_costs(tmp_path):
    """Same architecture, QAT vs DivQAT (one short epoch each from the same teacher): same flash, and the same
    instructions per inference up to the few data-dependent branches (requantization clamps)."""
    from torch.utils.data import TensorDataset

    from divqat_tvm.train import TrainConfig, make_student

    torch.manual_seed(0)
    teacher = build_model("tinycnn", SHAPE[0], CLASSES, SHAPE[1]).eval()
    data = TensorDataset(torch.randn(128, *SHAPE), torch.randint(0, CLASSES, (128,)))
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, device="cpu", progress=False)
    builds = {}
    for method in ("qat", "divqat"):
        student, _ = make_student(
            teacher,
            data,
            QuantConfig(method=method, calibration_batches=2),
            cfg,
            DivQATConfig(alpha=1.0) if method == "divqat" else None,
        )
        builds[method] = _compile(student.eval(), tmp_path / method)
    x = _inputs(10, seed=3)
    counts = {}
    for method, d in builds.items():
        with QemuOracle(d, board="mps2-an500", instances=1) as dev:
            dev.query(x)
            counts[method] = np.array([r.model_ticks for r in dev.last_results], dtype=np.float64) * 40
    size = {
        m: json.loads((build_firmware(d, "mps2-an500").out_dir / "footprint.json").read_text())
        for m, d in builds.items()
    }
    assert size["qat"]["flash_by_part_bytes"]["weights"] == size["divqat"]["flash_by_part_bytes"]["weights"]
    assert size["qat"]["arena_bytes"] == size["divqat"]["arena_bytes"]
    rel = abs(counts["divqat"].mean() - counts["qat"].mean()) / counts["qat"].mean()
    print(
        f"instructions per inference: QAT {counts['qat'].mean():,.0f}, DivQAT {counts['divqat'].mean():,.0f} "
        f"(relative difference {rel:.2e}); flash {size['qat']['flash_bytes']:,} vs {size['divqat']['flash_bytes']:,} bytes"
    )
    assert rel < 2e-3
    assert abs(size["qat"]["flash_bytes"] - size["divqat"]["flash_bytes"]) <= 64


@pytest.mark.parametrize("name", ["resnet8", "dscnn"])
def test_float_requantization_is_bit_exact_on_soft_and_hard_float(registry_builds, name, tmp_path):
    """requant "float" (onnxruntime's rounding): the M3 does it in software, the M7 in VFP, the M55 may use
    MVE; the answers are the host's, bit for bit (-ffp-contract=off everywhere)."""
    src = registry_builds[name][0].with_suffix(".onnx")
    build_dir = tmp_path / f"{name}-float"
    compile_onnx(src, build_dir, requant="float", target="cortex-m7", core="cortex-m7")
    x = _inputs(16, seed=4)
    host = TvmHostOracle(build_dir)
    p_host = host.query(x)
    for board in ("mps2-an385", "mps2-an500", "mps3-an547"):
        with QemuOracle(build_dir, board=board, instances=1) as dev:
            np.testing.assert_array_equal(_bits(dev.query(x)), _bits(p_host), err_msg=board)
            np.testing.assert_array_equal(np.stack([r.logits for r in dev.last_results]), host.last_logits)
