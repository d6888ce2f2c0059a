"""The query interface: one `Oracle` over four backends (torch, tvm-host, qemu, serial)."""

from divqat_tvm.oracle.base import Oracle, QueryBudgetExceeded

__all__ = ["Oracle", "QueryBudgetExceeded"]
