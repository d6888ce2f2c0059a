"""Build-time settings shared by the firmware and its host twin: the defence spec and the C macros for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divqat_tvm.errors import DivqatError

#: C value of DQ_DEFENSE per defence kind (firmware/include/dq_postprocess.h)
DEFENSE_CODES = {"none": 0, "rs": 1, "dcp": 2}
_PARAMS = {"none": (), "rs": ("beta", "gamma"), "dcp": ("beta", "gamma", "nu")}
_DEFAULTS = {"gamma": 0.1, "nu": 1000.0}


@dataclass(frozen=True)
class DefenseSpec:
    """An output-perturbation defence compiled into the post-processing: kind and float32 parameters."""

    kind: str = "none"
    beta: float = 0.0
    gamma: float = 0.1
    nu: float = 1000.0

    @property
    def code(self) -> int:
        return DEFENSE_CODES[self.kind]

    @property
    def tag(self) -> str:
        """Short, file-name-safe label, e.g. 'rs-b0.5-g0.1' ('' for no defence)."""
        if self.kind == "none":
            return ""
        parts = [self.kind, f"b{self.beta:g}", f"g{self.gamma:g}"]
        if self.kind == "dcp":
            parts.append(f"n{self.nu:g}")
        return "-".join(parts)

    def spec(self) -> str:
        """The spec string this parses from (`parse_defense(s.spec()) == s`)."""
        if self.kind == "none":
            return "none"
        names = _PARAMS[self.kind]
        return f"{self.kind}:" + ",".join(f"{n}={getattr(self, n):g}" for n in names)

    def c_defines(self) -> list[str]:
        """-D flags: float32 literals that round-trip exactly, so host and device use the same bits."""
        return [
            f"-DDQ_DEFENSE={self.code}",
            f"-DDQ_BETA={_c_float(self.beta)}",
            f"-DDQ_GAMMA={_c_float(self.gamma)}",
            f"-DDQ_NU={_c_float(self.nu)}",
        ]


def _c_float(v: float) -> str:
    text = f"{float(np.float32(v)):.9g}"
    if not np.isfinite(np.float32(v)):
        raise DivqatError(f"defence parameter {v} is not finite.", "Use a finite number.")
    return (text if any(c in text for c in ".e") else text + ".0") + "f"


def parse_defense(spec: str | DefenseSpec | None) -> DefenseSpec:
    """'rs:beta=0.5,gamma=0.1', 'dcp:beta=0.5,gamma=0.1,nu=1000', 'none' or None -> DefenseSpec."""
    if isinstance(spec, DefenseSpec):
        return spec
    if spec is None or spec.strip() in ("", "none"):
        return DefenseSpec()
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _PARAMS or kind == "none":
        raise DivqatError(
            f"unknown defence '{spec}'.", "Use rs:beta=B,gamma=G or dcp:beta=B,gamma=G,nu=N (or none)."
        )
    values: dict[str, float] = dict(_DEFAULTS)
    for item in filter(None, (s.strip() for s in rest.split(","))):
        name, eq, val = item.partition("=")
        if not eq or name.strip() not in _PARAMS[kind]:
            raise DivqatError(
                f"defence parameter '{item}' is not valid for {kind}.",
                f"{kind} takes {', '.join(_PARAMS[kind])} as name=value pairs separated by commas.",
            )
        try:
            values[name.strip()] = float(val)
        except ValueError as e:
            raise DivqatError(f"defence parameter '{item}' is not a number.", "Write e.g. beta=0.5.") from e
    if "beta" not in values:
        raise DivqatError(f"defence '{spec}' lacks beta.", f"Write e.g. {kind}:beta=0.5,gamma=0.1.")
    if values["beta"] < 0 or values["gamma"] < 0 or values.get("nu", 0.0) < 0:
        raise DivqatError(f"defence '{spec}' has a negative parameter.", "beta, gamma and nu must be >= 0.")
    return DefenseSpec(kind=kind, **{k: v for k, v in values.items() if k in _PARAMS[kind]})


def from_postprocessor(defense: object) -> DefenseSpec:
    """DefenseSpec from what `divqat_tvm.defenses.parse_defense` returns (ReverseSigmoid, DCP or None),
    a spec string, or a DefenseSpec: the device backends compile the defence into C instead of running it."""
    if defense is None or isinstance(defense, (str, DefenseSpec)):
        return parse_defense(defense)
    name = type(defense).__name__
    if name == "ReverseSigmoid":
        return DefenseSpec("rs", float(defense.beta), float(defense.gamma))
    if name == "DCP":
        return DefenseSpec("dcp", float(defense.beta), float(defense.gamma), float(defense.nu))
    raise DivqatError(f"the defence {getattr(defense, 'spec', name)} cannot run on a device.",
                      "Device backends support one RS or DCP defence (compiled into the firmware).")
