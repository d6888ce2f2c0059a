"""Experiment configs and profiles: validation errors and grid expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from divqat_tvm.experiment.config import (
    ConfigError,
    builtin_config,
    load_experiment,
    load_profile,
    profile_names,
    validate_experiment,
)
from divqat_tvm.experiment.grid import expand

GRID = {
    "name": "g",
    "seeds": [0, 1, 2],
    "attacks": ["knockoff", "dfme", "maze"],
    "victims": [
        {"method": "float"},
        {"method": "ptq"},
        {"method": "qat"},
        {"method": "divqat", "alpha": [0.5, 1, 2]},
        {"method": "qat", "defense": "rs", "beta": 0.5},
        {"method": "qat", "defense": "dcp", "beta": [0.5, 1.0]},
        {"method": "divqat", "alpha": 1, "defense": "dcp", "beta": 0.5},
    ],
}


def test_grid_expands_every_dataset_victim_attack_seed() -> None:
    exp = validate_experiment(GRID, "g.toml")
    keys = [v.key for v in exp.victims]
    assert keys == [
        "float",
        "ptq",
        "qat",
        "divqat-a0.5",
        "divqat-a1",
        "divqat-a2",
        "qat+rs-b0.5",
        "qat+dcp-b0.5",
        "qat+dcp-b1",
        "divqat-a1+dcp-b0.5",
    ]
    tasks = expand(exp)
    by = {s: [t for t in tasks if t.stage == s] for s in ("teacher", "model", "build", "victim", "footprint", "attack")}
    assert len(by["teacher"]) == 1
    # defended victims deploy their base model: float, ptq, qat, 3 divqat α
    assert [t.id.split("__")[-1] for t in by["model"]] == [
        "float",
        "ptq",
        "qat",
        "divqat-a0.5",
        "divqat-a1",
        "divqat-a2",
    ]
    assert len(by["victim"]) == 10 and not by["footprint"] and not by["build"]
    assert len(by["attack"]) == 10 * 3 * 3
    assert len({t.id for t in by["attack"]}) == 90
    cell = next(t for t in by["attack"] if t.id == "mnist5k__divqat-a1+dcp-b0.5__maze__s2")
    assert cell.params["victim"]["defense"] == "dcp" and cell.params["params"]["budget"] == 100_000
    assert cell.deps == (("victim", "mnist5k__divqat-a1+dcp-b0.5"),)
    dcp = next(t for t in by["victim"] if t.id == "mnist5k__qat+dcp-b1")
    # its model, then the references of its perturbation / agreement figures: the teacher and the undefended QAT model
    assert dcp.deps == (("model", "mnist5k__tinycnn__qat"), ("teacher", "mnist5k__tinycnn"))
    div = next(t for t in by["victim"] if t.id == "mnist5k__divqat-a1")
    assert div.deps == (
        ("model", "mnist5k__tinycnn__divqat-a1"),
        ("teacher", "mnist5k__tinycnn"),
        ("model", "mnist5k__tinycnn__qat"),
    )
    assert div.params["refs"] == {"teacher": "mnist5k__tinycnn", "qat_model": "mnist5k__tinycnn__qat"}
    # stages come in pipeline order
    order = [t.stage for t in tasks]
    assert order == sorted(order, key=["teacher", "model", "build", "victim", "footprint", "attack"].index)


def test_defence_specs_follow_the_contract() -> None:
    exp = validate_experiment(GRID, "g.toml")
    specs = {v.key: v.defense_spec for v in exp.victims}
    assert specs["qat"] is None
    assert specs["qat+rs-b0.5"] == "rs:beta=0.5,gamma=0.1"
    assert specs["qat+dcp-b1"] == "dcp:beta=1,gamma=0.1,nu=1000"


def test_device_backend_compiles_quantized_victims_and_footprints_them() -> None:
    exp = validate_experiment({**GRID, "oracle": {"backend": "qemu"}, "footprint": {"enabled": True}}, "g.toml")
    tasks = expand(exp)
    builds = {t.id.split("__")[-1]: t for t in tasks if t.stage == "build"}
    assert sorted(builds) == sorted(
        ["ptq", "qat", "divqat-a0.5", "divqat-a1", "divqat-a2"]
    )  # no int8 build of a float model
    assert builds["qat"].params["core"] == "cortex-m7" and builds["qat"].deps == (("model", "mnist5k__tinycnn__qat"),)
    victims = {t.id.split("__")[-1]: t for t in tasks if t.stage == "victim"}
    assert victims["float"].params["backend"] == "torch" and victims["qat+rs-b0.5"].params["backend"] == "qemu"
    assert ("build", "mnist5k__tinycnn__qat") in victims["qat+rs-b0.5"].deps
    feet = [t for t in tasks if t.stage == "footprint"]
    assert len(feet) == 9 and all(t.deps[0][0] == "build" for t in feet)  # all but the float model


def test_footprints_on_the_torch_backend_compile_without_changing_the_oracle() -> None:
    tasks = expand(validate_experiment({**GRID, "footprint": {"enabled": True}}, "g.toml"))
    victims = [t for t in tasks if t.stage == "victim"]
    assert all(t.params["backend"] == "torch" and all(d[0] != "build" for d in t.deps) for t in victims)
    assert len([t for t in tasks if t.stage == "build"]) == 5


def test_profiles_are_data_and_config_overrides_merge() -> None:
    assert {"quick", "paper"} <= set(profile_names())
    assert load_profile("paper").attacks["dfme"]["budget"] == 20_000_000
    exp = validate_experiment({**GRID, "overrides": {"attacks": {"knockoff": {"budget": 500}}}}, "g.toml")
    assert exp.profile.attacks["knockoff"]["budget"] == 500 and exp.profile.attacks["knockoff"]["fit"]["epochs"] == 20
    assert validate_experiment(GRID, "g.toml", profile="paper").profile.name == "paper"


def test_shipped_configs_validate() -> None:
    root = Path(__file__).resolve().parents[2]
    for p in [*sorted((root / "configs").glob("*.toml")), builtin_config("demo")]:
        exp = load_experiment(p)
        assert expand(exp), p


@pytest.mark.parametrize(
    "change, match",
    [
        ({"attacks": ["knockof"]}, "attacks"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"victims": [{"method": "divqat"}]}, "without alpha"),
        ({"victims": [{"method": "qat", "alpha": 1}]}, "Only divqat"),
        ({"victims": [{"method": "qat", "defense": "dcp"}]}, "without beta"),
        ({"victims": [{"method": "qat", "defense": "xx", "beta": 1}]}, "defense"),
        ({"victims": [{"method": "qat", "beta": 1}]}, "without a defense"),
        ({"victims": [{"method": "divqat", "alpha": -1}]}, "alpha"),
        ({"victims": [{"method": "qat"}, {"method": "qat"}]}, "more than once"),
        ({"victims": []}, "no \\[\\[victims\\]\\]"),
        ({"victims": [{"method": "fp8"}]}, "method"),
        ({"oracle": {"backend": "gpu"}}, "backend"),
        ({"profile": "huge"}, "Unknown profile"),
        ({"colour": "red"}, "unknown key"),
        ({"overrides": {"attacks": {"dfme": {"budget": 0}}}}, "budget"),
        ({"overrides": {"workers": 0}}, "workers"),
        ({"overrides": {"attacks": {"bim": {"budget": 5}}}}, "unknown attack"),
        ({"attack_seeds": {"jbda": [0]}}, "attack_seeds"),
        ({"attack_seeds": {"dfme": [1, 1]}}, "attack_seeds.dfme"),
        ({"attack_seeds": [0, 1]}, "attack_seeds"),
    ],
)
def test_bad_configs_name_the_key_and_the_fix(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        validate_experiment({**GRID, **change}, "bad.toml")
    assert e.value.fix


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("name = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(tmp_path / "broken.toml")
    (tmp_path / "prof.toml").write_text('name = "p"\n[defaults]\n[teacher]\n')
    with pytest.raises(ConfigError, match=r"lacks the table\(s\) \[quantize\], \[attacks\]"):
        load_profile(tmp_path / "prof.toml")


def test_victim_seeds_multiply_training_and_cells_but_not_footprints() -> None:
    exp = validate_experiment({**GRID, "victim_seeds": [0, 1, 2], "footprint": {"enabled": True}}, "g.toml")
    tasks = expand(exp)
    by = {s: [t for t in tasks if t.stage == s] for s in ("teacher", "model", "footprint", "attack")}
    assert [t.id for t in by["teacher"]] == ["mnist5k__tinycnn", "mnist5k__tinycnn__v1", "mnist5k__tinycnn__v2"]
    assert [t.params["seed"] for t in by["teacher"]] == [0, 1, 2]
    assert len(by["model"]) == 6 * 3 and len(by["attack"]) == 10 * 3 * 3 * 3
    assert len(by["footprint"]) == 9  # the same network whatever its seed: measured once
    cell = next(t for t in by["attack"] if t.id == "mnist5k__qat__knockoff__s1__v2")
    assert (
        cell.params["victim_seed"] == 2 and cell.params["seed"] == 1 and cell.deps == (("victim", "mnist5k__qat__v2"),)
    )
    # seed 0 keeps the ids and parameters of a single-seed run (old run directories stay resumable)
    assert "victim_seed" not in next(t for t in by["attack"] if t.id == "mnist5k__qat__knockoff__s1").params


def test_attack_seeds_give_one_attack_its_own_seeds_and_keep_the_others() -> None:
    exp = validate_experiment({**GRID, "attack_seeds": {"dfme": [0, 1], "maze": [7]}}, "g.toml")
    cells = [t for t in expand(exp) if t.stage == "attack"]
    seeds = {a: sorted({t.params["seed"] for t in cells if t.params["attack"] == a}) for a in exp.attacks}
    assert seeds == {"knockoff": [0, 1, 2], "dfme": [0, 1], "maze": [7]}
    assert len(cells) == 10 * (3 + 2 + 1)
    # a cell keeps the id and parameters it has in the full grid, so a larger run reuses it
    full = {t.id: t.params for t in expand(validate_experiment(GRID, "g.toml")) if t.stage == "attack"}
    assert all(full[t.id] == t.params for t in cells if t.id in full)
    assert exp.to_dict()["attack_seeds"] == {"dfme": [0, 1], "maze": [7]}


def test_objective_is_a_divqat_victim_option() -> None:
    exp = validate_experiment(
        {**GRID, "victims": [{"method": "qat"}, {"method": "divqat", "alpha": 1, "objective": "nontop"}]}, "g.toml"
    )
    v = exp.victims[1]
    assert (v.key, v.label, v.objective) == ("divqat-nontop-a1", "DivQAT-nontop (α=1)", "nontop")
    model = next(t for t in expand(exp) if t.stage == "model" and t.id.endswith("divqat-nontop-a1"))
    assert model.params["objective"] == "nontop"
    with pytest.raises(ConfigError, match="objective"):
        validate_experiment({**GRID, "victims": [{"method": "divqat", "alpha": 1, "objective": "bogus"}]}, "g.toml")
    with pytest.raises(ConfigError, match="Only divqat victims take objective"):
        validate_experiment({**GRID, "victims": [{"method": "qat", "objective": "nontop"}]}, "g.toml")


@pytest.mark.parametrize(
    "victim,surrogate,ok",
    [
        ("mnist5k@victim", "mnist5k@attacker", True),
        ("mnist5k", "digits20", True),
        ("mnist5k", "mnist5k", False),
        ("mnist5k", "mnist5k@attacker", False),
        ("mnist5k@victim", "mnist5k", False),
        ("mnist5k@victim", "mnist5k@victim", False),
        ("mnist5k@attacker", "mnist5k@victim", False),
    ],
)
def test_an_in_distribution_attacker_never_overlaps_the_victims_data(victim, surrogate, ok) -> None:
    cfg = {**GRID, "datasets": [{"victim": victim, "surrogate": surrogate}]}
    if ok:
        validate_experiment(cfg, "g.toml")
    else:
        with pytest.raises(ConfigError, match="victim"):
            validate_experiment(cfg, "g.toml")
