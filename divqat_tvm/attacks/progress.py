"""How attacks report progress without knowing about terminals: a callback, with a tqdm/rich-free
default that does nothing. The CLI passes a tqdm bar that shows queries, loss and stolen accuracy."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(
        self, queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = ""
    ) -> None: ...


def no_progress(queries: int, loss: float | None = None, accuracy: float | None = None, phase: str = "") -> None:
    """The default: report nothing."""
