"""Graph → Relax (int8 TE kernels) → TVM passes → scheduled TIR → C with plain pointer arguments.

Pass order (from ../shared/notes/tvm-relax-0.27.md): LegalizeOps, AnnotateTIROpPattern, FoldConstant,
DeadCodeElimination, ToNonDataflow, RemovePurityChecking, CallTIRRewrite, StaticPlanBlockMemory, under a
target context. FuseOps/FuseTIR are not run: each TE kernel already is one fused int8 operator
(conv + bias + requantize + clamp), and keeping one PrimFunc per graph op keeps the op ↔ call mapping
(op names, per-op profiling hooks) exact.

The only dependence on TVM 0.27 internals is `_unpacked_api()`: the TIR pipeline looks
`tirx.transform.MakePackedAPI` up when it runs, and we put a pass of ours in its place for the
duration of one build (see that function). tvm.__version__ is checked against the pinned version.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from divqat_tvm.compiler import memory, native, ops
from divqat_tvm.compiler.graph import Graph, Op
from divqat_tvm.compiler.ops.common import SCHEMES
from divqat_tvm.compiler.ops.conv import DOT_S8
from divqat_tvm.errors import CompileError

PINNED_TVM = "0.27.0"


def check_tvm_version() -> str:
    import tvm

    if not tvm.__version__.startswith(PINNED_TVM):
        raise CompileError(
            f"TVM {tvm.__version__} is installed; the compiler is written against {PINNED_TVM}.",
            "pip install apache-tvm==0.27.0.post1 (see pyproject.toml).",
        )
    return tvm.__version__


# ---------------------------------------------------------------- Graph → Relax
def kernel_name(prefix: str, index: int, op: Op) -> str:
    """C symbol of op `index`: prefix, index and kind (unique, valid C)."""
    return f"{prefix}_k{index}_{op.kind}"


KERNEL_CHOICES = ("native", "te")


def build_relax(
    graph: Graph,
    scheme: str,
    prefix: str,
    kernels: str = "native",
    chosen: dict[int, Any] | None = None,
    overrides: dict[int, Any] | None = None,
) -> Any:
    """The int8 Relax module: one call per graph op, constants inline.

    Args:
        kernels: "native" runs the layers the hand-written C kernels handle with them (compiler/ops/, csrc/), "te"
            keeps every op on its TE kernel (compiler/ops/).
        chosen: if given, filled with {op index: NativeCall or None (TE kernel)}.
        overrides: {op index: NativeCall or None (TE kernel)} for the ops whose kernel was chosen elsewhere
            (tune.py: by measurement); only with kernels "native".
    """
    from tvm import relax

    if scheme not in SCHEMES:
        raise CompileError(f"unknown requantization scheme '{scheme}'.", f"Use one of {', '.join(SCHEMES)}.")
    if kernels not in KERNEL_CHOICES:
        raise CompileError(f"unknown kernel choice '{kernels}'.", f"Use one of {', '.join(KERNEL_CHOICES)}.")
    bb = relax.BlockBuilder()
    t_in = graph.input_tensor
    x = relax.Var("input", relax.TensorType(t_in.shape, "int8"))
    env: dict[str, Any] = {graph.input: x}
    with bb.function("main", [x]):
        with bb.dataflow():
            for i, op in enumerate(graph.ops):
                name = kernel_name(prefix, i, op)
                if kernels == "native" and overrides is not None and i in overrides:
                    call = overrides[i]
                else:
                    call = ops.native_call(graph, op, scheme) if kernels == "native" else None
                if chosen is not None:
                    chosen[i] = call
                if call is not None:
                    env[op.output] = bb.emit(_emit_native(bb, graph, op, env, call, name))
                else:
                    env[op.output] = bb.emit(_emit_op(bb, graph, op, env, scheme, name))
            out = bb.emit_output(env[graph.output])
        bb.emit_func_output(out)
    return bb.get()


def _emit_native(bb: Any, graph: Graph, op: Op, env: dict[str, Any], call: native.NativeCall, name: str) -> Any:
    """call_tir of the PrimFunc wrapping a hand-written kernel; with a scratch its outputs are (y, scratch) and
    y is returned."""
    from tvm import relax

    inputs = [op.inputs[i] for i in call.inputs]
    func = native.prim_func(call, [graph.tensors[n].shape for n in inputs], name)
    gv = bb.add_func(func, name)
    out_ty = [relax.TensorType(sh, dt) for sh, dt in native.out_types(call)]
    args = relax.Tuple([*(env[n] for n in inputs), *(relax.const(c) for c in call.consts)])
    if len(out_ty) == 1:
        return relax.call_tir(gv, args, out_ty[0])
    return relax.TupleGetItem(bb.emit(relax.call_tir(gv, args, out_ty)), 0)


def _emit_op(bb: Any, graph: Graph, op: Op, env: dict[str, Any], scheme: str, name: str) -> Any:
    """call_te of the op's TE kernel (its family's, compiler/ops/) on its inputs and constants."""
    from tvm import relax

    fn, consts, params = ops.te_kernel(graph, op, scheme)
    tensors = [*(env[n] for n in op.inputs), *(relax.const(c) for c in consts)]
    return bb.call_te(functools.partial(fn, **params), *tensors, primfunc_name_hint=name)


# ---------------------------------------------------------------- Relax passes
def plan(mod: Any) -> Any:
    """Lower to PrimFuncs and a statically planned main (alloc_storage / alloc_tensor / calls)."""
    import tvm
    from tvm import relax

    seq = tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.DeadCodeElimination(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.StaticPlanBlockMemory(),
        ]
    )
    with tvm.target.Target({"kind": "c"}):
        return seq(mod)


# ---------------------------------------------------------------- schedules
class _NotAChain(ValueError):
    """The kernel is not a chain of stages around at most one reduction; `schedule` leaves it as written."""


def schedule(func: Any) -> Any:
    """Leave no workspace. Every kernel is a chain of TE stages; stages after a reduction (bias,
    requantization, clamp) are computed right after the accumulator, under the reduction's spatial
    loops, and stages before an elementwise output are computed inside its loop. Each intermediate
    then holds one element (a scalar temporary) instead of a whole tensor."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    try:
        _schedule_chain(sch)
    except (_NotAChain, s_tir.ScheduleError):  # a kernel of another shape (e.g. softmax's two reductions): as written;
        return func  # build_c still refuses any kernel that ends up needing a workspace
    return sch.mod["main"]


def _schedule_chain(sch: Any) -> None:
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))
    reductions = [i for i, b in enumerate(blocks) if _is_reduction(sch, b)]
    if reductions:
        if len(reductions) > 1:
            raise _NotAChain("not a single-reduction chain")
        first = reductions[0]
        for b in blocks[:first]:  # producers such as padding: computed where they are read
            sch.compute_inline(b)
        red = blocks[first]
        n_spatial = sum(1 for iv in sch.get(red).iter_vars if int(iv.iter_type) == 0)
        loop = sch.get_loops(red)[n_spatial - 1]
        for b in blocks[first + 1 :]:
            sch.reverse_compute_at(b, loop)
        if n_spatial < len(sch.get_loops(red)):  # initialise the accumulator once, before its reduction loops,
            sch.decompose_reduction(red, sch.get_loops(red)[n_spatial])  # not with a test in every iteration
    else:
        out = blocks[-1]
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, sch.get_loops(out)[-1])
        _decompose_nested_reductions(sch, blocks[:-1])


def _decompose_nested_reductions(sch: Any, outer_blocks: list[Any]) -> None:
    """A reduction whose extent depends on the output index (conv's in-bounds kernel window, ops.conv._taps) is a
    reduction block nested in a spatial one. Initialise its accumulator once, before its reduction loops,
    instead of with a test in every iteration."""
    for outer in outer_blocks:
        for inner in sch.get_child_blocks(outer):
            if _is_reduction(sch, inner) and sch.get(inner).init is not None:
                sch.decompose_reduction(inner, sch.get_loops(inner)[0])  # loops inside `outer` only


def _is_reduction(sch: Any, b: Any) -> bool:
    return any(int(iv.iter_type) != 0 for iv in sch.get(b).iter_vars)


# ---------------------------------------------------------------- plain-pointer C
@contextlib.contextmanager
def _unpacked_api() -> Iterator[None]:
    """THE one TVM-0.27-internals hack: replace MakePackedAPI for one build.

    The s_tir pipeline calls `tirx.transform.MakePackedAPI()` when it runs. In its place, each PrimFunc's
    buffer-typed parameters become raw `T*` pointers (every `buffer_data(param)` in the body is replaced by
    the new pointer variable), the body is wrapped in the `device_id`/`device_type` attributes that
    LowerTVMBuiltin needs, and the function is moved to the host target. Codegen then prints
    `void f(int8_t* x, ...)`: no DLTensor, no packed calling convention.
    """
    from tvm import tirx

    original = tirx.transform.MakePackedAPI
    tirx.transform.MakePackedAPI = lambda: _make_unpacked_api_pass()
    try:
        yield
    finally:
        tirx.transform.MakePackedAPI = original


def _make_unpacked_api_pass() -> Any:
    import tvm
    import tvm_ffi
    from tvm import tirx
    from tvm.ir import PointerType

    buffer_data = tvm.ir.Op.get("tirx.buffer_data")

    @tvm.transform.module_pass(opt_level=0, name="divqat.MakeUnpackedAPI")
    def _pass(mod: Any, _ctx: Any) -> Any:
        out = {}
        for gv, f in mod.functions.items():
            handles = {p: tirx.Var(p.name, PointerType(p.ty.dtype)) for p in f.params}

            def to_handle(call: Any, handles: dict = handles) -> Any:
                if call.op.same_as(buffer_data) and len(call.args) == 1:
                    for p, h in handles.items():
                        if call.args[0].same_as(p):
                            return h
                return call

            body = tvm_ffi.structural_map(f.body, (tvm.ir.Call, to_handle))
            body = tirx.AttrStmt("default", "device_id", tirx.const(0, "int32"), body)
            body = tirx.AttrStmt("default", "device_type", tirx.const(1, "int32"), body)
            nf = tirx.PrimFunc([handles[p] for p in f.params], body, f.ret_type, f.attrs)
            target = f.attrs["target"]
            out[gv] = nf.with_attr("target", target.host if target.host is not None else target)
        return tvm.IRModule(out)

    return _pass


_TVM_INCLUDE = re.compile(r'^#include "tvm/.*"\n', re.M)


def build_c(funcs: dict[str, Any]) -> str:
    """Schedule and build PrimFuncs (by C name) with the `c` target; return portable C source."""
    import tvm

    mod = tvm.IRModule({name: schedule(f).with_attr("global_symbol", name) for name, f in funcs.items()})
    with _unpacked_api():
        lib = tvm.tirx.build(mod, target=tvm.target.Target({"kind": "c"}))
    src = lib.inspect_source()
    if "TVMBackendAllocWorkspace" in src:
        bad = [n for n in funcs if re.search(rf"{n}\([^)]*\)\s*{{(?:(?!\n}}).)*TVMBackendAllocWorkspace", src, re.S)]
        raise CompileError(
            f"kernels {bad or '?'} still need a TVM workspace after scheduling.", "This is a compiler bug; report it."
        )
    return portable_c(src)


# The C of DOT_S8 (the TE conv's row dot product). TVM declares it `int32_t f(void*, void*, int32_t, int32_t)` (or
# int64_t for a constant length) before each kernel; portable_c drops those declarations.
DOT_S8_SOURCE = native.CSRC / "dot_s8.c"


def conv_dot_kernel(kernels_c: str, core: str | None) -> dict[str, Any] | None:
    """Which inner product the conv kernels use, for the manifest: None when no kernel calls DOT_S8;
    else its name and "mve" (the core has Helium), "smlad" (the DSP extension) or "c" (plain loop);
    "by-compiler" when no core is named (the C picks its path from __ARM_FEATURE_MVE/_DSP when compiled)."""
    if f"{DOT_S8}(" not in kernels_c:
        return None
    if core is None:
        kind = "by-compiler"
    else:
        from divqat_tvm.targets import load_core

        c = load_core(core)
        kind = "mve" if c.mve else "smlad" if c.dsp else "c"
    return {"function": DOT_S8, "kind": kind}


def portable_c(src: str) -> str:
    """Strip TVM runtime traces: includes → <stdint.h>/<math.h>, TVM_DLL empty, no __tvm_ffi_main or library ctx.
    Adds the C helpers the kernels call (csrc/dot_s8.c) when they call them."""
    src = _TVM_INCLUDE.sub("", src)
    src = src.replace("void* __tvm_ffi__library_ctx = NULL;\n", "")
    src = re.sub(r"#ifdef __cplusplus\nextern \"C\"\n#endif\nTVM_DLL \w+ __tvm_ffi_main.*?\n}\n", "", src, flags=re.S)
    head = (
        "/* Generated by divqat-tvm with Apache TVM (c target). Plain C99: no TVM runtime needed. */\n"
        "#include <stdint.h>\n#include <math.h>\n#include <stdbool.h>\n#ifndef TVM_DLL\n#define TVM_DLL\n#endif\n"
    )
    src = src.replace("#include <math.h>\n", "").replace("#include <stdbool.h>\n", "")
    if f"{DOT_S8}(" in src:  # TVM declares it per call site (a constant length may print as int64_t): ours only
        src = re.sub(rf"#ifdef __cplusplus\nextern \"C\"\n#endif\nTVM_DLL int32_t {DOT_S8}\([^)]*\);\n", "", src)
        head += DOT_S8_SOURCE.read_text()
    used = native.used_functions(src)
    if used:  # hand-written kernels (csrc/): pasted once, before the TVM wrappers that call them
        src = native.strip_tvm_declarations(src)
        head += (
            "\n/* ---- divqat-tvm hand-written kernels (divqat_tvm/compiler/csrc) ---- */\n"
            + native.library_source(used)
        )
        head += "/* ---- end of hand-written kernels ---- */\n\n"
    return head + src


# ---------------------------------------------------------------- the planned main
@dataclass
class Tensor:
    """A tensor of the planned main: arena-resident (storage/offset), a constant, the input or the output."""

    var: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "arena" | "const" | "input" | "output"
    const: np.ndarray | None = None
    storage: str | None = None
    storage_offset: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class Call:
    func: str
    args: list[str]


@dataclass
class Plan:
    """What the emitter needs: tensors, calls in order, TVM's storage sizes, the kernels' C, and the overlaps
    the kernels allow (an output written over an input that dies at its call, compiler/inplace.py)."""

    tensors: dict[str, Tensor]
    calls: list[Call]
    storages: dict[str, int]
    prim_funcs: dict[str, Any] = field(default_factory=dict)
    overlaps: list[memory.Overlap] = field(default_factory=list)


def read_plan(mod: Any) -> Plan:
    """Walk the statically planned Relax main into a Plan (straight-line code only)."""
    from tvm import relax

    main = mod["main"]
    tensors: dict[str, Tensor] = {}
    alias: dict[str, str] = {}
    storages: dict[str, int] = {}
    calls: list[Call] = []
    param = main.params[0]
    tensors[param.name] = Tensor(param.name, tuple(int(s) for s in param.ty.shape), str(param.ty.dtype), "input")
    n_const = 0

    def arg_name(a: Any) -> str:
        nonlocal n_const
        if isinstance(a, relax.Var):
            return alias.get(a.name, a.name)
        value = getattr(a, "value", None)
        if value is not None and hasattr(value, "numpy"):
            arr = value.numpy()
            name = f"c{n_const}"
            n_const += 1
            tensors[name] = Tensor(name, arr.shape, str(arr.dtype), "const", const=arr)
            return name
        raise CompileError(f"unexpected argument {a} in the planned main.", "This is a compiler bug; report it.")

    body = main.body
    tuples: dict[str, list[str]] = {}
    for block in body.blocks:
        for b in block.bindings:
            v = b.value
            name = b.var.name
            op = getattr(getattr(v, "op", None), "name", None)
            if isinstance(v, relax.Var):
                alias[name] = alias.get(v.name, v.name)
            elif isinstance(v, relax.Tuple):  # a multi-output call's results (a native kernel's y, scratch)
                tuples[name] = [arg_name(f) for f in v.fields]
            elif (
                isinstance(v, relax.TupleGetItem)
                and isinstance(v.tuple_value, relax.Var)
                and v.tuple_value.name in tuples
            ):
                alias[name] = tuples[v.tuple_value.name][int(v.index)]
            elif op == "relax.memory.alloc_storage":
                storages[name] = int(v.args[0].values[0])
            elif op == "relax.memory.alloc_tensor":
                shape = tuple(int(s) for s in v.args[2].values)
                tensors[name] = Tensor(
                    name,
                    shape,
                    str(v.args[3].value),
                    "arena",
                    storage=v.args[0].name,
                    storage_offset=int(v.args[1].value),
                )
            elif op == "relax.builtin.alloc_tensor":
                shape = tuple(int(s) for s in v.args[0].values)
                tensors[name] = Tensor(name, shape, str(v.args[1].value), "output")
            elif type(getattr(v, "op", None)).__name__ == "GlobalVar":  # a call of one of our PrimFuncs
                calls.append(Call(v.op.name_hint, [arg_name(a) for a in v.args]))
            else:
                raise CompileError(
                    f"unexpected binding '{name} = {op or v}' in the planned main.",
                    "This is a compiler bug; report it.",
                )
    ret = alias.get(body.body.name, body.body.name)
    if tensors.get(ret) is None or tensors[ret].kind != "output":
        raise CompileError(
            "the planned main does not return its own output buffer.", "This is a compiler bug; report it."
        )
    outputs = [t for t in tensors.values() if t.kind == "output"]
    if len(outputs) != 1:
        raise CompileError(
            f"the planned main allocates {len(outputs)} unplanned tensors.", "This is a compiler bug; report it."
        )
    prims = {gv.name_hint: f for gv, f in mod.functions.items() if type(f).__name__ == "PrimFunc"}
    return Plan(tensors, calls, storages, prims)
