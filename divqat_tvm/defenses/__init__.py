"""Output-perturbation defences (RS, DCP) as composable post-processors on probability vectors.

They are the reference twins of the firmware's C versions (firmware/src/postprocess.c). Backends that
run on the host (torch) apply them in Python; device backends apply them in C on the device.

Public API: `ReverseSigmoid`, `DCP`, `Chain`, `parse_defense(spec)`, `Defense` (any callable p -> p), and
`DefenseSpec` (spec.py: the one parser/validator, the defaults, and the generated C constants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from divqat_tvm.defenses.dcp import DCP
from divqat_tvm.defenses.rs import ReverseSigmoid
from divqat_tvm.defenses.spec import DefenseSpec

Defense = Union[ReverseSigmoid, DCP, "Chain", Callable]


@dataclass(frozen=True)
class Chain:
    """Apply post-processors left to right (e.g. a DivQAT victim answered through DCP)."""

    steps: tuple

    @property
    def spec(self) -> str:
        return "+".join(getattr(s, "spec", type(s).__name__) for s in self.steps)

    def __call__(self, p):
        for s in self.steps:
            p = s(p)
        return p


__all__ = ["DCP", "Chain", "Defense", "DefenseSpec", "ReverseSigmoid", "parse_defense"]


def postprocessor(spec: DefenseSpec) -> ReverseSigmoid | DCP | None:
    """The torch/numpy twin of a spec: ReverseSigmoid, DCP, or None for no defence."""
    if spec.kind == "rs":
        return ReverseSigmoid(spec.beta, spec.gamma)
    if spec.kind == "dcp":
        return DCP(spec.beta, spec.gamma, spec.nu)
    return None


def parse_defense(spec: str | None) -> ReverseSigmoid | DCP | None:
    """A post-processor (ReverseSigmoid, DCP) from its spec string; None, "" or "none" gives None.

    Raises:
        DivqatError: unknown defence, unknown or repeated parameter, non-number, missing beta, or a value
            out of range.
    """
    return postprocessor(DefenseSpec.parse(spec))
