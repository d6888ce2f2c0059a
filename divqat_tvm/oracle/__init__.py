"""The query interface: one `Oracle` over four backends (torch, tvm-host, qemu, serial)."""

from divqat_tvm.oracle.base import Oracle, QueryBudgetExceeded
from divqat_tvm.oracle.factory import (
    BackendSpec,
    backend_kinds,
    open_oracle,
    parse_backend_spec,
    register_backend,
    victim_meta,
)

__all__ = [
    "BackendSpec",
    "Oracle",
    "QueryBudgetExceeded",
    "backend_kinds",
    "open_oracle",
    "victim_meta",
    "parse_backend_spec",
    "register_backend",
]
