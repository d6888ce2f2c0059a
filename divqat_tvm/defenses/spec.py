"""Parse `--defense` strings: "rs:beta=0.5,gamma=0.1", "dcp:beta=0.5,gamma=0.1,nu=1000", "none"."""

from __future__ import annotations

from divqat_tvm.errors import DivqatError

_PARAMS = {"rs": ("beta", "gamma"), "dcp": ("beta", "gamma", "nu")}
_FIX = 'Write e.g. "rs:beta=0.5,gamma=0.1" or "dcp:beta=0.5,gamma=0.1,nu=1000" (beta is required).'


def parse_defense(spec: str | None):
    """A post-processor from its spec string; None, "" or "none" gives None.

    Raises:
        DivqatError: unknown defence, unknown or repeated parameter, non-number, missing beta, or a value
            out of range.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    from divqat_tvm.defenses.dcp import DCP
    from divqat_tvm.defenses.rs import ReverseSigmoid

    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _PARAMS:
        raise DivqatError(f"Unknown defence {kind!r} in {spec!r}; the known defences are rs and dcp.", _FIX)
    values: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or name not in _PARAMS[kind]:
            raise DivqatError(
                f"Defence {spec!r} has the parameter {item!r}, but {kind} takes {', '.join(_PARAMS[kind])}.", _FIX
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
        return ReverseSigmoid(**values) if kind == "rs" else DCP(**values)
    except ValueError as e:
        raise DivqatError(f"Defence {spec!r} is out of range: {e}", _FIX) from None
