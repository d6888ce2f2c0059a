"""The one description of an output-perturbation defence, for Python and C alike.

`DefenseSpec` parses and validates `--defense` strings ("rs:beta=0.5,gamma=0.1", "dcp:beta=0.5,gamma=0.1,nu=1000",
"none"), holds the defaults (γ = 0.1, ν = 1000) and the numerical constants the twins share (the probability
clamp), and renders them for C: `c_macros()` is the single source of `dq_defense_config.h` (written into every
firmware build directory, `c_header()`) and of the equivalent -D flags of the host build (`c_defines()`). The
torch/numpy twins (rs.py, dcp.py) take their defaults and clamp from here too, so Python and C cannot drift.

Public API: `DefenseSpec`, `parse_defense` (spec string -> ReverseSigmoid / DCP / None), `parse_defense_spec`
(spec string -> DefenseSpec), `from_postprocessor`, `DEFAULT_GAMMA`, `DEFAULT_NU`, `EPS`, `P_MIN`, `P_MAX`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from divqat_tvm.errors import DivqatError

#: RS / DCP sigmoid slope γ (Lee et al. and Khaled et al. use 0.1)
DEFAULT_GAMMA = 0.1
#: DCP gate sharpness ν (Khaled et al.: 1000, a near step)
DEFAULT_NU = 1000.0
#: probabilities are clamped to [EPS, 1 − EPS] before the log-odds (float32-representable on both sides)
EPS = 1e-6
#: the clamp bounds as the float32 values C's `DQ_P_MIN` / `DQ_P_MAX` hold, so both twins clamp alike
P_MIN = float(np.float32(EPS))
P_MAX = float(np.float32(1.0) - np.float32(EPS))
#: C value of DQ_DEFENSE per defence kind
DEFENSE_CODES = {"none": 0, "rs": 1, "dcp": 2}
#: parameters each kind takes (beta is required, the others default)
PARAMS = {"none": (), "rs": ("beta", "gamma"), "dcp": ("beta", "gamma", "nu")}
DEFAULTS = {"gamma": DEFAULT_GAMMA, "nu": DEFAULT_NU}
HEADER_NAME = "dq_defense_config.h"

_FIX = 'Write e.g. "rs:beta=0.5,gamma=0.1" or "dcp:beta=0.5,gamma=0.1,nu=1000" (beta is required).'


def validate(beta: float, gamma: float, nu: float | None = None) -> None:
    """Full-sentence ValueErrors for out-of-range parameters (shared by RS, DCP and DefenseSpec)."""
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, but it is {beta}.")
    if not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a finite number > 0, but it is {gamma}.")
    if nu is not None and (not math.isfinite(nu) or nu <= 0):
        raise ValueError(f"nu must be a finite number > 0, but it is {nu}.")
    for name, v in (("beta", beta), ("gamma", gamma), ("nu", nu)):
        with np.errstate(over="ignore"):
            if v is not None and not np.isfinite(np.float32(v)):
                raise ValueError(f"{name} must fit a float32, but it is {v}.")


@dataclass(frozen=True)
class DefenseSpec:
    """A defence: kind ('none', 'rs', 'dcp') and its parameters, validated on construction."""

    kind: str = "none"
    beta: float = 0.0
    gamma: float = DEFAULT_GAMMA
    nu: float = DEFAULT_NU

    def __post_init__(self) -> None:
        if self.kind not in PARAMS:
            raise DivqatError(f"Unknown defence kind {self.kind!r}; the known defences are rs and dcp.", _FIX)
        try:
            validate(self.beta, self.gamma, self.nu)
        except ValueError as e:
            raise DivqatError(f"Defence {self.spec()!r} is out of range: {e}", _FIX) from None

    @classmethod
    def parse(cls, spec: str | DefenseSpec | None) -> DefenseSpec:
        """From a `--defense` string; None, "" or "none" is no defence.

        Raises:
            DivqatError: unknown defence, unknown or repeated parameter, non-number, missing beta, or a value
                out of range.
        """
        if isinstance(spec, DefenseSpec):
            return spec
        if spec is None or spec.strip().lower() in ("", "none"):
            return cls()
        kind, _, rest = spec.strip().partition(":")
        kind = kind.strip().lower()
        if kind not in PARAMS or kind == "none":
            raise DivqatError(f"Unknown defence {kind!r} in {spec!r}; the known defences are rs and dcp.", _FIX)
        values: dict[str, float] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if not eq or name not in PARAMS[kind]:
                raise DivqatError(
                    f"Defence {spec!r} has the parameter {item!r}, but {kind} takes {', '.join(PARAMS[kind])}.", _FIX
                )
            if name in values:
                raise DivqatError(f"Defence {spec!r} sets {name} twice.", _FIX)
            try:
                values[name] = float(value)
            except ValueError:
                raise DivqatError(f"Defence {spec!r}: {name}={value!r} is not a number.", _FIX) from None
        if "beta" not in values:
            raise DivqatError(f"Defence {spec!r} does not set beta.", _FIX)
        try:
            validate(values["beta"], values.get("gamma", DEFAULT_GAMMA), values.get("nu"))
        except ValueError as e:
            raise DivqatError(f"Defence {spec!r} is out of range: {e}", _FIX) from None
        return cls(kind, **values)

    @property
    def code(self) -> int:
        return DEFENSE_CODES[self.kind]

    @property
    def tag(self) -> str:
        """Short, file-name-safe label, e.g. 'rs-b0.5-g0.1' ('' for no defence)."""
        if self.kind == "none":
            return ""
        parts = [self.kind, f"b{_num(self.beta)}", f"g{_num(self.gamma)}"]
        if self.kind == "dcp":
            parts.append(f"n{_num(self.nu)}")
        return "-".join(parts)

    def spec(self) -> str:
        """The spec string this parses from (`DefenseSpec.parse(s.spec()) == s`)."""
        if self.kind == "none":
            return "none"
        return f"{self.kind}:" + ",".join(f"{n}={_num(getattr(self, n))}" for n in PARAMS[self.kind])

    def c_macros(self) -> dict[str, str]:
        """C macro name -> value: the defence of this build and the constants the C twin shares with Python.
        Floats are float32 literals that round-trip exactly, so host and device use the same bits."""
        out = {"DQ_DEFENSE_CONFIG": "1"}
        out.update({f"DQ_DEFENSE_{k.upper()}": str(v) for k, v in DEFENSE_CODES.items()})
        out.update(
            {
                "DQ_DEFENSE": str(self.code),
                "DQ_BETA": c_float(self.beta),
                "DQ_GAMMA": c_float(self.gamma),
                "DQ_NU": c_float(self.nu),
                "DQ_P_MIN": c_float(P_MIN),
                "DQ_P_MAX": c_float(P_MAX),
            }
        )
        return out

    def c_defines(self) -> list[str]:
        """The same macros as -D flags (the host twin's build)."""
        return [f"-D{k}={v}" for k, v in self.c_macros().items()]

    def c_header(self) -> str:
        """dq_defense_config.h for a firmware build directory."""
        lines = [
            f"/* Generated by divqat_tvm/defenses/spec.py (DefenseSpec.c_header) for the defence {self.spec()!r}:",
            " * do not edit; change the --defense string or the spec's defaults instead. */",
            "#ifndef DQ_DEFENSE_CONFIG_H",
            "#define DQ_DEFENSE_CONFIG_H",
            "",
        ]
        lines += [f"#define {k} {v}" for k, v in self.c_macros().items()]
        lines += ["", "#endif", ""]
        return "\n".join(lines)


def _num(v: float) -> str:
    """Short ('0.5', '1000') where that is exact, else Python's shortest round-trip form."""
    text = f"{v:g}"
    return text if float(text) == v else repr(float(v))


def c_float(v: float) -> str:
    """A C float32 literal holding exactly np.float32(v)."""
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if not np.isfinite(f):
        raise DivqatError(f"defence parameter {v} is not finite as a float32.", "Use a finite number.")
    text = f"{float(f):.9g}"
    return (text if any(c in text for c in ".e") else text + ".0") + "f"


def parse_defense_spec(spec: str | DefenseSpec | None) -> DefenseSpec:
    """'rs:beta=0.5,gamma=0.1', 'dcp:beta=0.5,gamma=0.1,nu=1000', 'none', None or a DefenseSpec -> DefenseSpec."""
    return DefenseSpec.parse(spec)


def from_postprocessor(defense: object) -> DefenseSpec:
    """DefenseSpec from what `parse_defense` returns (ReverseSigmoid, DCP or None), a spec string, or a
    DefenseSpec: the device backends compile the defence into C instead of running it."""
    if defense is None or isinstance(defense, (str, DefenseSpec)):
        return DefenseSpec.parse(defense)
    name = type(defense).__name__  # by name: the torch twins live a layer above this module
    params = {k: float(getattr(defense, k)) for k in ("beta", "gamma", "nu") if hasattr(defense, k)}
    if name == "ReverseSigmoid":
        return DefenseSpec("rs", params["beta"], params["gamma"])
    if name == "DCP":
        return DefenseSpec("dcp", params["beta"], params["gamma"], params["nu"])
    raise DivqatError(
        f"the defence {getattr(defense, 'spec', name)} cannot run on a device.",
        "Device backends support one RS or DCP defence (compiled into the firmware).",
    )
