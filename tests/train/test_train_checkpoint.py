"""Checkpoint round trips (float and int8 student with frozen observers) and clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from divqat_tvm.data import load_dataset
from divqat_tvm.errors import CheckpointError
from divqat_tvm.models import build_model
from divqat_tvm.quant.config import QuantConfig
from divqat_tvm.quant.prepare import QuantizedModel, quantize_model
from divqat_tvm.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

torch.set_num_threads(1)
DATA = "synthetic:3x16x16:5"


def _meta(arch: str) -> dict:
    info = load_dataset(DATA, "test").info
    return {
        "arch": arch,
        "dataset": DATA,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "normalization": {"mean": list(info.mean), "std": list(info.std)},
        "metrics": {"test_acc": 0.5},
    }


@pytest.mark.parametrize("arch", ["tinycnn", "resnet8"])
def test_round_trip_float_and_quantized(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    x, _ = load_dataset(DATA, "test").tensors()
    model = build_model(arch, 3, 5, 16)
    model.train()
    with torch.no_grad():
        model(x)  # non-trivial BN statistics
    model.eval()
    p = save_checkpoint(tmp_path / "t.pt", model, _meta(arch))
    loaded, meta = load_checkpoint(p)
    assert meta["kind"] == "float" and meta["method"] == "float" and meta["format_version"] == 1
    assert meta["input_shape"] == [3, 16, 16] and meta["metrics"] == {"test_acc": 0.5}
    assert not loaded.training
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)

    student = quantize_model(model, QuantConfig(method="qat", observer_momentum=0.05), [x[:64], x[64:]])
    student.freeze_observers()
    ps = save_checkpoint(
        tmp_path / "s.pt",
        student,
        {**_meta(arch), "method": "divqat", "alpha": 1.0, "kl_cap": 0.3, "kl_direction": "teacher_student"},
    )
    ls, ms = load_checkpoint(ps, kind="quantized")
    assert isinstance(ls, QuantizedModel) and ms["kind"] == "quantized" and ms["alpha"] == 1.0
    assert ls.config == student.config and ls.observers_frozen
    student.eval()
    torch.testing.assert_close(ls(x), student(x), atol=0, rtol=0)
    ls.train()  # frozen observers survive: training mode must not move the ranges
    scales = [float(o.scale) for o in ls.observers()]
    ls(x * 3)
    assert scales == [float(o.scale) for o in ls.observers()]


def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is not a readable divqat-tvm checkpoint") as e:
        load_checkpoint(junk)
    assert e.value.fix
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a divqat-tvm checkpoint"):
        load_checkpoint(other)
    resume = tmp_path / "r.pt"
    torch.save({"format": "divqat-tvm-resume"}, resume)
    with pytest.raises(CheckpointError, match="resume file"):
        load_checkpoint(resume)
    good = save_checkpoint(tmp_path / "good.pt", build_model("tinycnn", 3, 5, 16), _meta("tinycnn"))
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="needs an int8 student"):
        load_checkpoint(good, kind="quantized")
    # weights that do not fit the architecture named in the metadata
    payload = read_checkpoint(good)
    payload["meta"]["arch"] = "resnet8"
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not fit its architecture 'resnet8'"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path) -> None:
    m = build_model("tinycnn", 3, 5, 16)
    save_checkpoint(tmp_path / "a.pt", m, _meta("tinycnn"))
    save_checkpoint(tmp_path / "a.pt", m, _meta("tinycnn"))  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
