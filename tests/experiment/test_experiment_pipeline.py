"""The pipeline's glue: attack configs from profiles, oracle specs, footprint figures from the firmware JSON."""

from __future__ import annotations

import pytest

from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.config import load_profile
from divqat_tvm.experiment.tasks import _oracle_spec, attack_config, footprint_figures


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_every_profile_attack_section_builds_its_config(profile: str) -> None:
    prof = load_profile(profile)
    for attack, params in prof.attacks.items():
        cfg = attack_config(attack, params)
        assert cfg.budget == params["budget"]
    k = attack_config("knockoff", prof.attacks["knockoff"])
    assert k.fit.epochs == prof.attacks["knockoff"]["fit"]["epochs"]


def test_bad_attack_options_are_clear_errors() -> None:
    with pytest.raises(DivqatError, match=r"option\(s\) \['lr'\] that DFMEConfig does not have"):
        attack_config("dfme", {"budget": 10_000, "lr": 0.1})
    with pytest.raises(DivqatError, match=r"\[attacks.knockoff.fit\] has option\(s\) \['lrr'\]"):
        attack_config("knockoff", {"budget": 100, "fit": {"lrr": 1}})
    with pytest.raises(DivqatError, match="below the cost of one iteration"):
        attack_config("maze", {"budget": 10, "batch_size": 32})


def test_oracle_specs_follow_the_contract() -> None:
    model = {"checkpoint": "/c/model.pt"}
    build = {"build": "/b/build"}
    assert _oracle_spec("torch", model, None, "mps2-an500") == "torch:/c/model.pt"
    assert _oracle_spec("qemu", model, build, "mps2-an500") == "qemu:/b/build@mps2-an500"
    assert _oracle_spec("tvm-host", model, build, "mps2-an500") == "tvm-host:/b/build"
    with pytest.raises(DivqatError, match="needs a compiled build"):
        _oracle_spec("qemu", model, None, "mps2-an500")


def test_footprint_figures_from_the_firmware_json() -> None:
    fp = {
        "board": "mps2-an500",
        "core": "cortex-m7",
        "defense": "dcp:beta=1,gamma=0.1,nu=1000",
        "flash_bytes": 51_000,
        "ram_bytes": 30_000,
        "measured": {
            "unit": "instructions (emulated)",
            "total_per_inference": 1_234_567.0,
            "model_per_inference": {"mean": 1_230_000.0, "min": 1, "max": 2},
            "postprocess_per_inference": {"mean": 4_567.0, "min": 1, "max": 2},
            "stack_peak_bytes": 900,
        },
    }
    f = footprint_figures(fp)
    assert (f["instructions_per_inference"], f["model_per_inference"], f["postprocess_per_inference"]) == (
        1_234_567.0,
        1_230_000.0,
        4_567.0,
    )
    assert (f["flash_bytes"], f["ram_bytes"], f["stack_bytes"], f["unit"]) == (
        51_000,
        30_000,
        900,
        "instructions (emulated)",
    )
    assert f["raw"] is fp
    static_only = footprint_figures({"flash_bytes": 1, "ram_bytes": 2, "measured": None})
    assert static_only["instructions_per_inference"] is None and static_only["flash_bytes"] == 1


def test_device_errors_are_retried_then_raised(tmp_path) -> None:
    from divqat_tvm.errors import DeviceError
    from divqat_tvm.experiment.scheduler import TaskContext
    from divqat_tvm.experiment.tasks import with_device_retries

    ctx = TaskContext(tmp_path, tmp_path, tmp_path)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DeviceError("time-out inside a frame.")
        return "answers"

    assert with_device_retries(flaky, ctx) == ("answers", 2)

    def broken() -> None:
        raise DeviceError("the emulator crashed.")

    with pytest.raises(DeviceError):
        with_device_retries(broken, ctx, retries=1)
    with pytest.raises(ValueError):  # other errors are not retried
        with_device_retries(lambda: (_ for _ in ()).throw(ValueError("bug")), ctx)


def test_source_digest_changes_with_the_code(tmp_path, monkeypatch) -> None:
    from divqat_tvm.experiment.tasks import source_digest

    pkg = tmp_path / "fakecomp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "lower.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    d1 = source_digest("fakecomp")
    assert source_digest("fakecomp") == d1
    (pkg / "lower.py").write_text("A = 2\n")
    assert source_digest("fakecomp") != d1
