"""The operator families (compiler/ops/): every operator the package defines belongs to exactly one family, every
family has the interface lowering, the reference, the tuner and the manifest call, and an op no family claims is
refused with a CompileError naming it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass

import numpy as np
import pytest

import divqat_tvm.compiler as compiler_pkg
from divqat_tvm.compiler import ops
from divqat_tvm.compiler.graph import Add, Conv2D, Graph, Op, QTensor
from divqat_tvm.compiler.ops.common import SCHEMES
from divqat_tvm.errors import CompileError


def _op_classes() -> list[type[Op]]:
    """Every concrete Op subclass defined anywhere in divqat_tvm.compiler."""
    seen: dict[str, type[Op]] = {}
    for info in pkgutil.walk_packages(compiler_pkg.__path__, "divqat_tvm.compiler."):
        mod = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Op) and cls is not Op and cls.__module__ == mod.__name__:
                seen[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(seen.values())


def _instance(cls: type[Op]) -> Op:
    op = cls("n", ["x"], "y")
    if isinstance(op, Conv2D):  # a groups-1 conv unless the family needs a depthwise one
        op.weight, op.groups = np.zeros((4, 4, 3, 3), np.int8), 1
    return op


def test_every_operator_is_claimed_by_exactly_one_family() -> None:
    classes = _op_classes()
    assert len(classes) >= 20  # the package's ops, not an empty walk
    for cls in classes:
        owners = [f.__name__ for f in ops.FAMILIES if f.claims(_instance(cls))]
        assert len(owners) == 1, (cls.__qualname__, owners)


def test_depthwise_conv_goes_to_the_depthwise_family_and_grouped_to_conv() -> None:
    dw = Conv2D("dw", ["x"], "y", weight=np.zeros((8, 1, 3, 3), np.int8), groups=8)
    grouped = Conv2D("g", ["x"], "y", weight=np.zeros((8, 2, 3, 3), np.int8), groups=4)
    assert ops.family(dw) is ops.depthwise and ops.family(grouped) is ops.conv


def test_every_family_has_the_interface() -> None:
    for f in ops.FAMILIES:
        for name in ("claims", "te_kernel", "reference", "native_call"):
            assert callable(getattr(f, name)), (f.__name__, name)
        assert isinstance(f.BLOCKS, dict)
    for function in ("divqat_conv_s8", "divqat_conv_rows_s8", "divqat_conv_rows_add_s8", "divqat_dwconv_s8"):
        assert set(ops.BLOCKS[function]) == {"dsp", "mve", "c"}


@dataclass
class _Unknown(Op):
    pass


def test_an_op_no_family_claims_is_refused_by_name() -> None:
    op = _Unknown("mystery_node", ["x"], "y")
    with pytest.raises(CompileError, match="no kernel for '_unknown' \\(node 'mystery_node'\\)"):
        ops.family(op)


def _add_graph() -> Graph:
    t = {
        "a": QTensor("a", (1, 8), 0.05, 3, "NC"),
        "b": QTensor("b", (1, 8), 0.02, -4, "NC"),
        "y": QTensor("y", (1, 8), 0.06, 1, "NC"),
    }
    return Graph(t, [Add("add", ["a", "b"], "y")], "a", "y", layout="NC")


def test_unknown_scheme_is_refused() -> None:
    g = _add_graph()
    with pytest.raises(CompileError, match="unknown requantization scheme 'double'"):
        ops.te_kernel(g, g.ops[0], "double")
    assert SCHEMES == ("fixed", "float")


def test_candidates_and_manifest_entry_follow_the_family() -> None:
    g = _add_graph()
    add = g.ops[0]
    assert list(ops.candidates(g, add, "float")) == ["te"]  # no native add under onnxruntime's arithmetic
    call = ops.native_call(g, add, "fixed")
    assert call is not None and call.function == "divqat_add_s8"
    assert list(ops.candidates(g, add, "fixed")) == ["native", "te"]
    entry = ops.manifest_entry(call, "cortex-m55")
    assert entry["name"] == "divqat_add_s8" and entry["variant"]["path"] == "mve"
    assert entry["variant"]["block"] == ops.BLOCKS["divqat_add_s8"]["mve"]
    assert ops.manifest_entry(None, "cortex-m7")["name"] == "tvm"
