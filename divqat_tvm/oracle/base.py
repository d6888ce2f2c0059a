"""The contract every victim backend meets, so attacks need only "something that answers queries".

`query(x)` takes float32 inputs [N, C, H, W] in the model's input space (already normalised) and returns
float32 probabilities [N, K]. Device backends quantize x to int8 with the model's input scale and zero
point before it leaves the host, exactly as a sensor's bytes would be. Every backend counts the images it
was asked about, and can refuse to exceed a budget.
"""

from __future__ import annotations

import abc
from types import TracebackType

import numpy as np

from divqat_tvm.errors import DivqatError


class QueryBudgetExceeded(DivqatError):
    """An attack asked for more queries than its budget allows."""


class Oracle(abc.ABC):
    """A black box that answers probability vectors; the attacker's only access to the victim.

    Subclasses implement `_query` (and `close` where they hold a process or a port). The public
    `query` validates shapes, enforces the budget and counts queries, so every backend counts alike.
    """

    #: short name of the backend, e.g. "torch", "tvm-host", "qemu", "serial"
    kind: str = "abstract"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, budget: int | None = None) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.budget = budget
        self.queries = 0

    def query(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a batch; counts len(x) queries against the budget."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise DivqatError(
                f"query input has shape {tuple(x.shape)}, but the victim takes [N, {', '.join(map(str, self.input_shape))}].",
                "Resize or reshape the inputs to the victim's input shape.",
            )
        if self.budget is not None and self.queries + len(x) > self.budget:
            raise QueryBudgetExceeded(
                f"{self.queries} + {len(x)} queries would exceed the budget of {self.budget}.",
                "Raise --budget or stop querying.",
            )
        p = self._query(x)
        self.queries += len(x)
        return np.asarray(p, dtype=np.float32).reshape(len(x), self.num_classes)

    @abc.abstractmethod
    def _query(self, x: np.ndarray) -> np.ndarray:
        """Backend-specific answer for a validated float32 batch [N, C, H, W]."""

    def close(self) -> None:  # noqa: B027 -- an optional hook: backends holding nothing keep this no-op
        """Release processes, ports and files; idempotent."""

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
