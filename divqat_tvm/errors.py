"""One exception type for every error a user can fix.

The CLI prints these as one line (problem, then fix) instead of a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class DivqatError(Exception):
    """A user-facing error: what went wrong and what to do about it.

    Args:
        problem: what was wrong, as a full sentence.
        fix: what the user should do, as a full sentence (optional).
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}" if fix else problem)


class DataError(DivqatError):
    """A dataset is missing or malformed."""


class CheckpointError(DivqatError):
    """A checkpoint is missing, corrupt or of the wrong kind."""


class CompileError(DivqatError):
    """A model cannot be compiled (unsupported operator, does not fit the target, toolchain failure)."""


class TargetError(DivqatError):
    """An unknown or malformed core/board description."""


class DeviceError(DivqatError):
    """The emulator or board failed: crash, hang, time-out, protocol error."""
