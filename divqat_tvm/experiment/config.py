"""Experiment configs and budget profiles: TOML data files, validated once into frozen dataclasses.

A config names *what* to compare (datasets, victims, attacks, seeds, oracle backend); a profile says *how
much* (training epochs, query budgets, attack hyper-parameters). The same config runs at `quick` or `paper`
budgets by switching the profile; `[overrides]` in a config deep-merges onto the profile (the demo uses it to
shrink budgets). Every mistake raises `ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from divqat_tvm.attacks.runner import ATTACKS
from divqat_tvm.defenses.spec import DEFAULT_GAMMA, DEFAULT_NU
from divqat_tvm.errors import DivqatError

METHODS = ("float", "ptq", "qat", "divqat")
#: DivQAT objectives (divqat_tvm.train.losses.OBJECTIVES): the paper's CE − α·KL, or the top-1-preserving variant
OBJECTIVES = ("paper", "nontop")
DEFENSES = ("rs", "dcp")
BACKENDS = ("torch", "tvm-host", "qemu")
PROFILE_SECTIONS = ("defaults", "teacher", "quantize", "attacks")


class ConfigError(DivqatError):
    """An experiment config or profile is missing, unparsable or holds a bad value."""


@dataclass(frozen=True)
class Profile:
    """Budgets and hyper-parameters shared by every cell of a run.

    Attributes:
        name: "quick", "paper" or a file's stem.
        description: one line for the report.
        workers: worker processes for independent cells.
        defaults: `arch`, `seeds`, `victim_seed` used when a config leaves them out.
        teacher: float teacher training parameters (epochs, batch_size, lr, ...).
        quantize: PTQ/QAT/DivQAT parameters (epochs, lr, calibration_batches, kl_cap, ...).
        attacks: per attack name its parameters, at least `budget` (queried images).
    """

    name: str
    description: str
    workers: int
    defaults: dict[str, Any]
    teacher: dict[str, Any]
    quantize: dict[str, Any]
    attacks: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "workers": self.workers,
            "defaults": self.defaults,
            "teacher": self.teacher,
            "quantize": self.quantize,
            "attacks": self.attacks,
        }


@dataclass(frozen=True)
class DatasetSpec:
    """The victim's data, the attacker's surrogate data (KnockoffNets) and the architecture."""

    victim: str
    surrogate: str
    arch: str

    @property
    def key(self) -> str:
        return self.victim


@dataclass(frozen=True)
class VictimSpec:
    """One victim variant: a training method, its α, and an optional on-device defence with its β.

    Attributes:
        method: "float", "ptq", "qat" or "divqat".
        alpha: DivQAT's α (None for the others).
        defense: "rs", "dcp" or None.
        beta: the defence's β (None without a defence).
        gamma: the defence's γ (RS and DCP), the papers' default from `defenses.spec`.
        nu: DCP's gate sharpness ν, the paper's default from `defenses.spec`.
        objective: DivQAT's objective, "paper" (CE − α·KL) or "nontop" (keeps the teacher's top-1; see
            `divqat_tvm.train.losses.NonTopDivQATLoss`); None for the other methods.
    """

    method: str
    alpha: float | None = None
    defense: str | None = None
    beta: float | None = None
    gamma: float = DEFAULT_GAMMA
    nu: float = DEFAULT_NU
    objective: str | None = None

    @property
    def model_key(self) -> str:
        """The trained model this variant deploys (defences share their base model's training)."""
        name = self.method if self.objective in (None, "paper") else f"{self.method}-{self.objective}"
        return name if self.alpha is None else f"{name}-a{_num(self.alpha)}"

    @property
    def key(self) -> str:
        """A file-safe unique name, e.g. "divqat-a1+dcp-b0.5"."""
        return self.model_key if self.defense is None else f"{self.model_key}+{self.defense}-b{_num(self.beta)}"

    @property
    def label(self) -> str:
        """The human name used in tables, e.g. "DivQAT (α=1) + DCP (β=0.5)"."""
        names = {"float": "Original (float)", "ptq": "PTQ", "qat": "QAT", "divqat": "DivQAT"}
        s = names[self.method] + ("" if self.objective in (None, "paper") else f"-{self.objective}")
        s += "" if self.alpha is None else f" (α={_num(self.alpha)})"
        if self.defense is not None:
            s += f" + {self.defense.upper()} (β={_num(self.beta)})"
        return s

    @property
    def defense_spec(self) -> str | None:
        """The oracle's defence spec string (docs/contracts.md), or None."""
        if self.defense is None:
            return None
        spec = f"{self.defense}:beta={_num(self.beta)},gamma={_num(self.gamma)}"
        return spec + (f",nu={_num(self.nu)}" if self.defense == "dcp" else "")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "method": self.method,
            "alpha": self.alpha,
            "defense": self.defense,
            "beta": self.beta,
            "gamma": self.gamma,
            "nu": self.nu,
            "key": self.key,
            "label": self.label,
        }
        if self.objective not in (None, "paper"):  # absent = the paper's (older run directories stay resumable)
            d["objective"] = self.objective
        return d


@dataclass(frozen=True)
class Experiment:
    """A validated config with its profile resolved: everything a run needs, and nothing else.

    Attributes:
        name: the run's name.
        source: the config file it came from.
        profile: budgets (after the config's overrides).
        datasets: victim/surrogate/arch triples.
        victims: victim variants, α and β lists already expanded.
        attacks: attack names in grid order.
        seeds: attack seeds (the paired unit of comparisons).
        attack_seeds: per-attack seed lists that replace `seeds` for that attack (a data-free cell costs ~20
            KnockoffNets cells, so a testbed that must fit the machine gives them fewer); `seeds_for` applies it.
        victim_seeds: seeds the teacher and students are trained from (each a separate victim; comparisons
            pair DivQAT and QAT trained from the same seed, and their intervals treat the victim seed as a
            random effect when there are several).
        backend: oracle backend the quantized victims answer through ("torch", "tvm-host", "qemu").
        core: the core compiled for (device backends).
        board: the emulated board (qemu backend and footprints).
        footprint: whether to measure instructions per inference, flash and RAM on the emulated board.
        data_dir: CIFAR/SVHN root, None for the default.
        keep_query_logs: log every query image and keep each finished cell's log for offline replay (~320 MB
            for 100k MNIST queries); by default a cell logs only the answers and a fingerprint per query
            (enough to resume it) and deletes the log once its result is written.
    """

    name: str
    source: str
    profile: Profile
    datasets: tuple[DatasetSpec, ...]
    victims: tuple[VictimSpec, ...]
    attacks: tuple[str, ...]
    seeds: tuple[int, ...]
    victim_seeds: tuple[int, ...] = (0,)
    attack_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    backend: str = "torch"
    core: str = "cortex-m7"
    board: str = "mps2-an500"
    footprint: bool = False
    data_dir: str | None = None
    keep_query_logs: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def seeds_for(self, attack: str) -> tuple[int, ...]:
        """The attack seeds of `attack`'s cells: its own list if the config gives one, else `seeds`."""
        return self.attack_seeds.get(attack, self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "profile": self.profile.to_dict(),
            "datasets": [vars(d) for d in self.datasets],
            "victims": [v.to_dict() for v in self.victims],
            "attacks": list(self.attacks),
            "seeds": list(self.seeds),
            "victim_seeds": list(self.victim_seeds),
            "attack_seeds": {a: list(s) for a, s in self.attack_seeds.items()},
            "backend": self.backend,
            "core": self.core,
            "board": self.board,
            "footprint": self.footprint,
            "data_dir": self.data_dir,
            "keep_query_logs": self.keep_query_logs,
        }


def _num(x: float | None) -> str:
    """A number as short as it reads: 1.0 → "1", 0.25 → "0.25"."""
    if x is None:
        return "none"
    return f"{float(x):g}"


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"The {what} file {path} does not exist.", "Check the path, or see configs/ for examples."
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"The {what} file {path} is not valid TOML: {e}.", "Fix the syntax at the line named."
        ) from None


def profile_names() -> list[str]:
    """The built-in profiles (files in divqat_tvm/experiment/profiles/)."""
    return sorted(
        p.name[:-5] for p in resources.files(__package__).joinpath("profiles").iterdir() if p.name.endswith(".toml")
    )


def builtin_config(name: str) -> Path:
    """Path of a built-in config (divqat_tvm/experiment/configs/NAME.toml), e.g. the demo's."""
    return Path(str(resources.files(__package__).joinpath("configs", f"{name}.toml")))


def load_profile(name_or_path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Profile:
    """Load a built-in profile by name, or a profile file by path, and apply a config's overrides.

    Raises:
        ConfigError: unknown name, unreadable file, missing section, or a bad value.
    """
    s = os.fspath(name_or_path)
    if s in profile_names():
        path = Path(str(resources.files(__package__).joinpath("profiles", f"{s}.toml")))
    elif s.endswith(".toml"):
        path = Path(s)
    else:
        raise ConfigError(
            f"Unknown profile {s!r}.", f"Use one of {', '.join(profile_names())} or a path to a .toml profile."
        )
    data = _read_toml(path, "profile")
    if overrides:
        data = deep_merge(data, overrides)
    return validate_profile(data, str(path))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `over`'s tables merged in recursively (values of `over` win)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def validate_profile(data: dict[str, Any], where: str) -> Profile:
    """Check a parsed profile and freeze it; `where` names the source in errors."""
    missing = [s for s in PROFILE_SECTIONS if not isinstance(data.get(s), dict)]
    if missing:
        raise ConfigError(
            f"The profile {where} lacks the table(s) {', '.join(f'[{m}]' for m in missing)}.",
            "Copy divqat_tvm/experiment/profiles/quick.toml and edit its values.",
        )
    workers = data.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(
            f"The profile {where} has workers = {workers!r}.",
            "Set workers to a positive integer (2 on a 2-core machine).",
        )
    attacks = data["attacks"]
    for name, params in attacks.items():
        if name not in ATTACKS:
            raise ConfigError(
                f"The profile {where} has an unknown attack [attacks.{name}].", f"Use {', '.join(ATTACKS)}."
            )
        b = params.get("budget") if isinstance(params, dict) else None
        if not isinstance(b, int) or isinstance(b, bool) or b <= 0:
            raise ConfigError(
                f"The profile {where} has [attacks.{name}] budget = {b!r}.",
                "Set budget to a positive number of queried images.",
            )
    for sec in ("teacher", "quantize"):
        for key in ("epochs", "batch_size"):
            v = data[sec].get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(
                    f"The profile {where} has [{sec}] {key} = {v!r}.", f"Set {key} to a non-negative integer."
                )
    return Profile(
        name=str(data.get("name", Path(where).stem)),
        description=str(data.get("description", "")),
        workers=workers,
        defaults=dict(data["defaults"]),
        teacher=dict(data["teacher"]),
        quantize=dict(data["quantize"]),
        attacks={k: dict(v) for k, v in attacks.items()},
    )


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _number(v: Any, what: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError(
            f"The config {where} has {what} = {v!r}.", f"Set {what} to a non-negative number or a list of them."
        )
    return float(v)


def expand_victims(entries: list[dict[str, Any]], where: str) -> tuple[VictimSpec, ...]:
    """Each `[[victims]]` entry, with α and β lists expanded into one variant per value (in order)."""
    out: list[VictimSpec] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(
                f"The config {where} has victims[{i}] = {e!r}, not a table.",
                "Write each victim as a [[victims]] table.",
            )
        unknown = set(e) - {"method", "alpha", "defense", "beta", "gamma", "nu", "objective"}
        if unknown:
            raise ConfigError(
                f"The config {where} has unknown key(s) {sorted(unknown)} in victims[{i}].",
                "Use method, alpha, objective, defense, beta, gamma, nu.",
            )
        method = e.get("method")
        if method not in METHODS:
            raise ConfigError(
                f"The config {where} has victims[{i}].method = {method!r}.", f"Use one of {', '.join(METHODS)}."
            )
        if method == "divqat" and "alpha" not in e:
            raise ConfigError(
                f"The config {where} has a divqat victim (victims[{i}]) without alpha.",
                "Add alpha = 1.0 or a list such as [0.5, 1, 2].",
            )
        if method != "divqat" and "alpha" in e:
            raise ConfigError(
                f"The config {where} gives alpha to a {method} victim (victims[{i}]).",
                "Only divqat victims take alpha; remove it.",
            )
        objective = e.get("objective", "paper" if method == "divqat" else None)
        if method != "divqat" and objective is not None:
            raise ConfigError(
                f"The config {where} gives objective to a {method} victim (victims[{i}]).",
                "Only divqat victims take objective; remove it.",
            )
        if method == "divqat" and objective not in OBJECTIVES:
            raise ConfigError(
                f"The config {where} has victims[{i}].objective = {objective!r}.",
                f"Use one of {', '.join(OBJECTIVES)}.",
            )
        defense = e.get("defense")
        if defense is not None and defense not in DEFENSES:
            raise ConfigError(
                f"The config {where} has victims[{i}].defense = {defense!r}.",
                f"Use one of {', '.join(DEFENSES)} or leave it out.",
            )
        if defense is not None and "beta" not in e:
            raise ConfigError(
                f"The config {where} has a {defense} defence (victims[{i}]) without beta.",
                "Add beta = 0.5 or a list of values.",
            )
        if defense is None and "beta" in e:
            raise ConfigError(
                f"The config {where} gives beta to victims[{i}] without a defense.",
                'Add defense = "rs" or "dcp", or remove beta.',
            )
        alphas = [_number(a, "alpha", where) for a in _as_list(e["alpha"])] if "alpha" in e else [None]
        betas = [_number(b, "beta", where) for b in _as_list(e["beta"])] if "beta" in e else [None]
        gamma = _number(e.get("gamma", DEFAULT_GAMMA), "gamma", where)
        nu = _number(e.get("nu", DEFAULT_NU), "nu", where)
        for a in alphas:
            for b in betas:
                out.append(VictimSpec(method, a, defense, b, gamma, nu, objective))
    keys = [v.key for v in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"The config {where} lists the victim(s) {dup} more than once.", "Remove the duplicates.")
    if not out:
        raise ConfigError(
            f"The config {where} has no [[victims]].", 'Add at least one, e.g. [[victims]] method = "qat".'
        )
    return tuple(out)


def check_disjoint(d: DatasetSpec, where: str, i: int) -> None:
    """An attacker drawing from the victim's own dataset must draw from the half the victim never trained on.

    Raises:
        ConfigError: a surrogate that overlaps the victim's training data, or an unknown partition.
    """
    from divqat_tvm.train.splits import split_name

    try:
        vb, vp = split_name(d.victim)
        sb, sp = split_name(d.surrogate)
    except DivqatError as e:
        raise ConfigError(f"The config {where} has datasets[{i}]: {e.problem}", e.fix) from None
    if vp == "attacker" or sp == "victim":
        raise ConfigError(
            f"The config {where} has datasets[{i}] victim = {d.victim!r}, surrogate = {d.surrogate!r}: the "
            "victim trains on @victim and the attacker draws from @attacker.",
            f'Write victim = "{vb}@victim", surrogate = "{sb}@attacker".',
        )
    if vb == sb and not (vp == "victim" and sp == "attacker"):
        raise ConfigError(
            f"The config {where} has datasets[{i}] victim = {d.victim!r}, surrogate = {d.surrogate!r}: the "
            "attacker's pool would overlap the victim's training data.",
            f'Use the disjoint halves: victim = "{vb}@victim", surrogate = "{vb}@attacker".',
        )


def load_experiment(path: str | os.PathLike[str], profile: str | None = None) -> Experiment:
    """Read and validate an experiment config; `profile` (a name or path) overrides the config's own.

    Raises:
        ConfigError: any missing or bad value, naming the key and the fix.
    """
    path = Path(path)
    data = _read_toml(path, "experiment config")
    return validate_experiment(data, str(path), profile)


def _seed_list(seeds: Any, key: str, where: str) -> list[int]:
    """A config's list of attack seeds, checked: distinct integers, at least one."""
    if (
        not isinstance(seeds, list)
        or not seeds
        or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(
            f"The config {where} has {key} = {seeds!r}.", f"Give a list of distinct integers, e.g. {key} = [0, 1, 2]."
        )
    return seeds


def validate_experiment(data: dict[str, Any], where: str, profile: str | None = None) -> Experiment:
    """Check a parsed config, resolve its profile and freeze it; `where` names the source in errors."""
    known = {
        "name",
        "profile",
        "arch",
        "seeds",
        "victim_seeds",
        "attack_seeds",
        "attacks",
        "datasets",
        "victims",
        "oracle",
        "footprint",
        "overrides",
        "data_dir",
        "keep_query_logs",
    }
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"The config {where} has unknown key(s) {sorted(unknown)}.", f"Use only {', '.join(sorted(known))}."
        )
    prof = load_profile(profile or data.get("profile", "quick"), data.get("overrides"))
    attacks = tuple(_as_list(data.get("attacks", list(ATTACKS))))
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ConfigError(f"The config {where} has attacks = {list(attacks)!r}.", f"Choose from {', '.join(ATTACKS)}.")
    no_budget = [a for a in attacks if a not in prof.attacks]
    if no_budget:
        raise ConfigError(
            f"The profile {prof.name} has no budget for the attack(s) {no_budget} the config {where} runs.",
            "Add [attacks.NAME] budget = ... to the profile or to the config's [overrides].",
        )
    seeds = _seed_list(data.get("seeds", prof.defaults.get("seeds", [0])), "seeds", where)
    per_attack = data.get("attack_seeds", {})
    if not isinstance(per_attack, dict) or any(a not in attacks for a in per_attack):
        raise ConfigError(
            f"The config {where} has attack_seeds = {per_attack!r}, but it runs the attacks {list(attacks)}.",
            "Write [attack_seeds] with one of those attacks per key, e.g. dfme = [0, 1, 2].",
        )
    attack_seeds = {a: tuple(_seed_list(v, f"attack_seeds.{a}", where)) for a, v in per_attack.items()}
    vseeds = data.get("victim_seeds", [prof.defaults.get("victim_seed", 0)])
    if (
        not isinstance(vseeds, list)
        or not vseeds
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in vseeds)
        or len(set(vseeds)) != len(vseeds)
    ):
        raise ConfigError(
            f"The config {where} has victim_seeds = {vseeds!r}.",
            "Give a list of distinct non-negative integers, e.g. victim_seeds = [0, 1, 2].",
        )
    arch = data.get("arch", prof.defaults.get("arch", "tinycnn"))
    ds_entries = data.get("datasets", [{"victim": "mnist5k", "surrogate": "digits20"}])
    datasets = []
    for i, d in enumerate(_as_list(ds_entries)):
        if not isinstance(d, dict) or "victim" not in d:
            raise ConfigError(
                f"The config {where} has datasets[{i}] = {d!r}.",
                'Write [[datasets]] victim = "mnist5k" surrogate = "digits20" (surrogate: the attacker\'s data).',
            )
        victim = str(d["victim"])
        default_sur = victim.replace("@victim", "@attacker") if victim.endswith("@victim") else victim
        spec = DatasetSpec(victim, str(d.get("surrogate", default_sur)), str(d.get("arch", arch)))
        if "knockoff" in attacks:  # the only attack that draws natural images
            check_disjoint(spec, where, i)
        datasets.append(spec)
    if len({d.key for d in datasets}) != len(datasets):
        raise ConfigError(f"The config {where} lists a victim dataset twice.", "Give each victim dataset once.")
    victims = expand_victims(_as_list(data.get("victims", [])), where)
    oracle = data.get("oracle", {})
    backend = oracle.get("backend", "torch")
    if backend not in BACKENDS:
        raise ConfigError(f"The config {where} has oracle.backend = {backend!r}.", f"Use one of {', '.join(BACKENDS)}.")
    fp = data.get("footprint", {})
    return Experiment(
        name=str(data.get("name", Path(where).stem)),
        source=where,
        profile=prof,
        datasets=tuple(datasets),
        victims=victims,
        attacks=attacks,
        seeds=tuple(seeds),
        victim_seeds=tuple(vseeds),
        attack_seeds=attack_seeds,
        backend=backend,
        core=str(oracle.get("core", "cortex-m7")),
        board=str(oracle.get("board", "mps2-an500")),
        footprint=bool(fp.get("enabled", False)) if isinstance(fp, dict) else bool(fp),
        data_dir=data.get("data_dir"),
        keep_query_logs=bool(data.get("keep_query_logs", False)),
        raw=data,
    )
