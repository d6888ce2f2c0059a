"""How attacks report progress without knowing about terminals: a callback, with a tqdm/rich-free
default that does nothing. The CLI passes a tqdm bar that shows queries, loss and stolen accuracy."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def __call__(
        self, queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = ""
    ) -> None: ...


def no_progress(queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = "") -> None:
    """The default: report nothing."""


def report_step(
    progress: Progress,
    queries: int,
    loss: float,
    done: int,
    total: int,
    phase: str,
    every: int,
    evaluator: Any = None,
    student: Any = None,
) -> None:
    """Report step `done` of `total` (from 1) of a phase, with the student's accuracy (when an evaluator is
    given) every `every` steps and at the last: a long attack shows its copy improving without scoring it each
    step."""
    due = evaluator is not None and (done == total or done % every == 0)
    progress(queries, loss=loss, accuracy=evaluator.accuracy(student) if due else None, phase=f"{phase} {done}/{total}")
