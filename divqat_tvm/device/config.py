"""Build-time defence settings shared by the firmware and its host twin.

The definitions live in `divqat_tvm.defenses.spec` (one DefenseSpec for the `--defense` string, the
torch twins and the generated C header); this module keeps the names the device code imports.
"""

from __future__ import annotations

from divqat_tvm.defenses.spec import DEFENSE_CODES, DefenseSpec, from_postprocessor
from divqat_tvm.defenses.spec import parse_defense_spec as parse_defense

__all__ = ["DEFENSE_CODES", "DefenseSpec", "from_postprocessor", "parse_defense"]
