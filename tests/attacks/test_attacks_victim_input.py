"""The attacker feeds the victim in the victim's own input format (normalisation from its checkpoint or
manifest), e.g. raw pixels for MLPerf Tiny's ResNet-8, not the test set's normalisation."""

from __future__ import annotations

import json

import pytest
import torch

from divqat_tvm.cli.attack import _evaluator, _pixel_bounds, input_normalization
from divqat_tvm.data import dataset_info, load_dataset
from divqat_tvm.errors import DivqatError
from divqat_tvm.oracle import victim_meta

SYN = "synthetic:1x8x8:10"


@pytest.fixture
def victim_ckpt(tmp_path):
    from divqat_tvm.models import build_model
    from divqat_tvm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    meta = {
        "arch": "tinycnn",
        "dataset": SYN,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "normalization": {"mean": [0.0], "std": [1 / 255]},
        "method": "float",
    }
    path = tmp_path / "victim.pt"
    save_checkpoint(path, build_model("tinycnn", 1, 10, 8).eval(), meta)
    return path


def test_torch_victim_normalisation_reaches_the_test_images(victim_ckpt):
    info = dataset_info(SYN)
    norm = input_normalization(f"torch:{victim_ckpt}", info)
    assert norm == {"mean": [0.0], "std": [1 / 255]} != {"mean": list(info.mean), "std": list(info.std)}
    ev, x = _evaluator(f"torch:{victim_ckpt}", None, SYN, None, norm)
    raw, _ = load_dataset(SYN, "test", normalization=((0.0,), (1.0,))).tensors()
    assert torch.allclose(x, raw * 255, atol=1e-4)  # pixel values 0..255, as the victim expects
    assert _pixel_bounds("pixels", norm) == {
        "generator_output": "tanh-range",
        "pixel_low": (0.0,),
        "pixel_high": (255.0,),
    }
    assert _pixel_bounds("clip", norm) == {"generator_output": "clip", "pixel_low": (0.0,), "pixel_high": (255.0,)}
    assert _pixel_bounds("tanh", norm)["generator_output"] == "tanh"


def test_build_victim_normalisation_from_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"meta": {"normalization": {"mean": [0.0], "std": [0.5]}}}))
    assert victim_meta(f"tvm-host:{tmp_path}")["normalization"] == {"mean": [0.0], "std": [0.5]}
    norm = input_normalization(f"qemu:{tmp_path}@mps2-an500", dataset_info("synthetic"))
    assert norm == {"mean": [0.0] * 3, "std": [0.5] * 3}  # one value per channel of the 3-channel test set


def test_victim_without_normalisation_uses_the_test_set(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"meta": {}}))
    info = dataset_info(SYN)
    assert input_normalization(f"tvm-host:{tmp_path}", info) == {"mean": list(info.mean), "std": list(info.std)}


def test_build_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DivqatError, match="not a compiled build"):
        victim_meta(f"tvm-host:{tmp_path}")
