"""Softmax: TFLite's fixed-point int8 softmax (`Softmax`, and `SoftmaxOrt` under "fixed") and onnxruntime's
QLinearSoftmax along any axis (`SoftmaxOrt` under "float"), each with its numpy reference and TE kernel.

TFLite (tensorflow/lite/kernels/internal/reference/softmax.h, the kernel LiteRT's BUILTIN_REF resolver and
TFLite Micro both run) computes an int8 softmax entirely in fixed point:

1. ``diff = x − max(row)`` (int, ≤ 0); entries with ``diff < diff_min`` count as exp = 0;
2. ``diff`` is rescaled to Q5.26 by ``input_multiplier`` / ``input_left_shift`` (beta · input scale);
3. ``exp`` of it by gemmlowp's ``exp_on_negative_values`` (Q0.31), summed in Q12.19;
4. the reciprocal of the sum by gemmlowp's Newton–Raphson ``one_over_one_plus_x_for_x_in_0_1``;
5. each output is ``RoundingDivideByPOT(recip · exp, num_bits_over_unit + 23) − 128``, clamped.

Because the input is int8, step 2–3 depend on ``diff`` ∈ [−255, 0] only: the compiled kernel reads them
from a 256-entry int32 table built here by the numpy fixed-point code below (the table is a pure function
of the model's quantization, like TFLite's own optimized kernel's). Steps 1, 4 and 5 run in the kernel.
Every helper mirrors one gemmlowp/TFLite function of the same name, on int64 numpy arrays that hold
int32 values (wrapping where C wraps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from divqat_tvm.compiler import requant as rq
from divqat_tvm.compiler.graph import Graph, Op
from divqat_tvm.compiler.ops import common as C
from divqat_tvm.errors import CompileError

INT32_MAX = 2**31 - 1
SCALED_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits: exp's input is Q5.26
ACCUM_INTEGER_BITS = 12  # kAccumulationIntegerBits: the sum of exps is Q12.19
TABLE_SIZE = 256  # diff ∈ [−255, 0] for int8 inputs
OUTPUT_SCALE = 1.0 / 256  # TFLite requires these for an int8 softmax output
OUTPUT_ZERO_POINT = -128


@dataclass(frozen=True)
class SoftmaxParams:
    """What TFLite's SoftmaxPrepare computes for an int8 input."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(beta: float, input_scale: float) -> SoftmaxParams:
    """PreprocessSoftmaxScaling + CalculateInputRadius (non-single-rounding build), in double like TFLite."""
    real = min(float(beta) * float(input_scale) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float(INT32_MAX))
    if not real > 1.0:
        raise CompileError(
            f"softmax beta·input_scale = {float(beta) * float(input_scale):.3g} is too small for "
            "TFLite's fixed-point softmax (QuantizeMultiplierGreaterThanOne needs > 1).",
            "Re-quantize the model with a larger scale on the softmax input.",
        )
    m, shift = rq.quantize_multiplier(real)
    radius = math.floor(
        1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << shift)
    )
    return SoftmaxParams(int(m), int(shift), -int(radius))


# ---------------------------------------------------------------- gemmlowp fixed point, numpy
def _wrap32(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 (what C's int32 add/sub does on these CPUs)."""
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31


def _srdhm(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    return rq.srdhm(a, b)


def _rdbp(x: np.ndarray, exponent: int) -> np.ndarray:
    return rq.rounding_divide_by_pot(x, exponent)


def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    x = np.asarray(x, dtype=np.int64)
    if exponent < 0:
        return _rdbp(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, -(2**31), x << exponent))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp: exp(a) for a ∈ [−1/4, 0), Q0.31 in and out (Taylor expansion around −1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    poly = _sat_mul_pot(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap32(constant_term + _srdhm(constant_term, _wrap32(x + poly)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int = SCALED_DIFF_INTEGER_BITS) -> np.ndarray:
    """gemmlowp: exp(a) for a ≤ 0 given as Q(integer_bits) raw int32; result Q0.31 raw."""
    a = np.asarray(a, dtype=np.int64)
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = _wrap32((a & (quarter - 1)) - quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(_sat_mul_pot(a_mod, integer_bits))
    remainder = _wrap32(a_mod - a)
    for exponent, multiplier in _BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp: 1/(1+a) for a ∈ [0, 1), Q0.31 in and out (three Newton–Raphson steps in Q2.29)."""
    a = np.asarray(a, dtype=np.int64)
    s = a + INT32_MAX
    half_den = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # RoundingHalfSum: (sum ± 1) / 2, C division
    x = _wrap32(1515870810 + _srdhm(half_den, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half_den, x))
        x = _wrap32(x + _sat_mul_pot(_srdhm(x, one_minus), 2))
    return _sat_mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x))


def count_leading_zeros(x: np.ndarray) -> np.ndarray:
    """CountLeadingZeros of uint32 values (32 for 0)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    bits = np.zeros_like(x)
    for b in range(32):
        bits = np.where(x >= (1 << b), b + 1, bits)
    return 32 - bits


def get_reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 reciprocal-ish scale, num_bits_over_unit) of a positive Q(integer_digits)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted_minus_one = _wrap32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit


def exp_table(p: SoftmaxParams) -> np.ndarray:
    """int32 [256]: entry d = exp_on_negative_values(rescaled(−d)) in Q0.31, or 0 where −d < diff_min."""
    diff = -np.arange(TABLE_SIZE, dtype=np.int64)
    keep = diff >= p.diff_min
    shifted = _wrap32(
        np.where(keep, diff, 0) * (1 << p.input_left_shift)
    )  # MultiplyByQuantizedMultiplierGreaterThanOne
    scaled = _srdhm(shifted, p.input_multiplier)
    return np.where(keep, exp_on_negative_values(scaled), 0).astype(np.int32)


def softmax_int8_reference(x: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """TFLite's int8 → int8 softmax over the last axis, computed the reference kernel's way (no table)."""
    x = np.asarray(x, dtype=np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    keep = diff >= p.diff_min
    scaled = _srdhm(_wrap32(np.where(keep, diff, 0) * (1 << p.input_left_shift)), p.input_multiplier)
    e = np.where(keep, exp_on_negative_values(scaled), 0)
    total = _wrap32(np.where(keep, _sat_mul_pot(e, -ACCUM_INTEGER_BITS), 0).sum(axis=-1, keepdims=True))
    scale, bits = get_reciprocal(total, ACCUM_INTEGER_BITS)
    exponent = bits + 31 - 8
    out = rq.rounding_divide_by_pot(_srdhm(scale, e), exponent) - 128
    return np.where(keep, np.clip(out, -128, 127), -128).astype(np.int8)


# ---------------------------------------------------------------- the TE kernel
# The kernel is a te.extern whose body is built statement by statement: every intermediate of the
# fixed-point chain is a bound scalar (Bind), as in the C reference. As one TE expression the chain
# grows exponentially (each SRDHM reads its product three times) and TVM's passes never finish.
class _Body:
    """TIR statements with helpers to store a scalar, loop, and keep intermediates in local scratch slots.

    Intermediates go to slots of a local array rather than to Bind variables: TVM's buffer-region analysis
    substitutes bound values into later expressions, which again grows exponentially along the chain.
    (gcc keeps such constant-index local slots in registers.)
    """

    def __init__(self, scratch: dict | None = None) -> None:
        self.stmts: list = []
        self.scratch = (
            scratch
            if scratch is not None
            else {
                "int32": [tirx.decl_buffer((64,), "int32", name="s32", scope="global", elem_offset=0), 0],
                "int64": [tirx.decl_buffer((32,), "int64", name="s64", scope="global", elem_offset=0), 0],
            }
        )

    def let(self, value, dtype: str, name: str = "t"):
        buf, used = self.scratch[dtype]
        if used >= int(buf.shape[0]):
            raise RuntimeError("softmax kernel: scratch slots exhausted")
        self.scratch[dtype][1] = used + 1
        self.store(buf, value.astype(dtype), [used])
        return _ld(buf, [used])

    def store(self, buf, value, index) -> None:
        self.stmts.append(tirx.BufferStore(buf, value, [i if not isinstance(i, int) else _i32(i) for i in index]))

    def loop(self, extent: int, fill, name: str = "k") -> None:
        var = tirx.Var(name, "int32")
        inner = _Body(self.scratch)
        fill(inner, var)
        self.stmts.append(
            tirx.For(var, tirx.const(0, "int32"), tirx.const(extent, "int32"), tirx.ForKind.SERIAL, inner.seq())
        )

    def allocations(self) -> list:
        return [_stack_alloc(buf) for buf, _ in self.scratch.values()]

    def seq(self):
        return self.stmts[0] if len(self.stmts) == 1 else tirx.SeqStmt(self.stmts)


def _stack_alloc(buf):
    """A local array on the C stack: LowerTVMBuiltin keeps allocations marked disable_lower_builtin as
    plain arrays instead of TVMBackendAllocWorkspace calls (the firmware has no TVM runtime)."""
    return tirx.AllocBuffer(buf, annotations={"disable_lower_builtin": True})


def _i32(v: int):
    return tirx.const(v, "int32")


def _i64(v: int):
    return tirx.const(v, "int64")


def _ld(buf, index):
    return tirx.BufferLoad(buf, [i if not isinstance(i, int) else _i32(i) for i in index])


def _srdhm_s(b: _Body, x, y):
    """SaturatingRoundingDoublingHighMul (never both INT32_MIN here: one side is a positive scale)."""
    ab = b.let(x.astype("int64") * y.astype("int64"), "int64", "ab")
    s = b.let(ab + tirx.Select(ab >= 0, _i64(1 << 30), _i64(1 - (1 << 30))), "int64", "s")
    return b.let(tirx.Select(s >= 0, tirx.shift_right(s, _i64(31)), -tirx.shift_right(-s, _i64(31))), "int32", "hi")


def _rdbp_expr(x, e):
    """RoundingDivideByPOT of a bound int32 scalar `x` by an int32 exponent (a bound scalar or int)."""
    e = _i32(e) if isinstance(e, int) else e
    mask = tirx.shift_left(_i32(1), e) - 1
    thr = tirx.shift_right(mask, _i32(1)) + tirx.Select(x < 0, _i32(1), _i32(0))
    return tirx.shift_right(x, e) + tirx.Select(tirx.bitwise_and(x, mask) > thr, _i32(1), _i32(0))


def _sat_shl_s(b: _Body, x, exponent: int):
    """SaturatingRoundingMultiplyByPOT<exponent > 0>."""
    threshold = (1 << (31 - exponent)) - 1
    return b.let(
        tirx.Select(
            x > threshold,
            _i32(INT32_MAX),
            tirx.Select(x < -threshold, _i32(-(2**31)), tirx.shift_left(x, _i32(exponent))),
        ),
        "int32",
        "sat",
    )


def _reciprocal_s(b: _Body, total, clz):
    """GetReciprocal: Q0.31 scale of 1/(sum normalised to [1, 2)) by gemmlowp's Newton–Raphson."""
    a = b.let((tirx.shift_left(total.astype("int64"), clz.astype("int64")) - (1 << 31)).astype("int32"), "int32", "a")
    half_den = b.let(tirx.shift_right(a.astype("int64") + (1 << 31), _i64(1)), "int32", "half_den")  # a ≥ 0
    x = b.let(_i32(1515870810) + _srdhm_s(b, half_den, _i32(-1010580540)), "int32", "x")
    for _ in range(3):
        one_minus = b.let(_i32(1 << 29) - _srdhm_s(b, half_den, x), "int32", "one_minus")
        x = b.let(x + _sat_shl_s(b, _srdhm_s(b, x, one_minus), 2), "int32", "x")
    return _sat_shl_s(b, x, 1)


def softmax(x, table):
    """int8 softmax over the last axis of `x`; `table` is `exp_table(params)` (int32 [256])."""
    shape = tuple(int(d) for d in x.shape)
    depth = shape[-1]
    outer = int(np.prod(shape[:-1]))
    strides = [int(np.prod(shape[i + 1 : -1])) for i in range(len(shape) - 1)]

    def gen(ins, outs):
        xb, tb, ob = ins[0], ins[1], outs[0]
        st = tirx.decl_buffer((2,), "int32", name="acc", scope="global", elem_offset=0)

        def index(row, k):
            return [(row // s) % d for s, d in zip(strides, shape[:-1])] + [k]

        def row_body(b: _Body, row) -> None:
            b.store(st, _i32(-128), [0])
            b.loop(
                depth, lambda lb, k: lb.store(st, tirx.max(_ld(st, [0]), _ld(xb, index(row, k)).astype("int32")), [0])
            )
            mx = b.let(_ld(st, [0]), "int32", "row_max")
            b.store(st, _i32(0), [1])

            def add_exp(lb: _Body, k) -> None:
                e = lb.let(_ld(tb, [mx - _ld(xb, index(row, k)).astype("int32")]), "int32", "e")
                lb.store(st, _ld(st, [1]) + _rdbp_expr(e, ACCUM_INTEGER_BITS), [1])  # Rescale<12>

            b.loop(depth, add_exp)
            total = b.let(_ld(st, [1]), "int32", "sum_of_exps")
            b.store(st, _i32(0), [0])
            b.loop(
                32,
                lambda lb, k: lb.store(
                    st,
                    _ld(st, [0])
                    + tirx.Select(
                        total.astype("int64") < tirx.shift_left(_i64(1), k.astype("int64")), _i32(1), _i32(0)
                    ),
                    [0],
                ),
                "bit",
            )
            clz = b.let(_ld(st, [0]), "int32", "clz")  # = CountLeadingZeros(sum), sum > 0
            recip = _reciprocal_s(b, total, clz)
            exponent = b.let(_i32(ACCUM_INTEGER_BITS + 31 - 8) - clz, "int32", "exponent")

            def out(lb: _Body, k) -> None:
                e = lb.let(_ld(tb, [mx - _ld(xb, index(row, k)).astype("int32")]), "int32", "e")
                p = _srdhm_s(lb, recip, e)
                v = lb.let(_rdbp_expr(p, exponent) - 128, "int32", "v")
                lb.store(ob, tirx.max(tirx.min(v, _i32(127)), _i32(-128)).astype("int8"), index(row, k))

            b.loop(depth, out)

        body = _Body()
        body.loop(outer, row_body, "row")
        body.stmts[:0] = [_stack_alloc(st), *body.allocations()]
        return body.seq()

    bufs = [
        tirx.decl_buffer(t.shape, t.dtype, name, elem_offset=0)  # plain pointers, no offset variable
        for t, name in ((x, "x"), (table, "exp_table"))
    ]
    out = tirx.decl_buffer(x.shape, "int8", "out", elem_offset=0)
    return te.extern([x.shape], [x, table], gen, name="softmax", dtype="int8", in_buffers=bufs, out_buffers=[out])


# ---------------------------------------------------------------- onnxruntime's QLinearSoftmax (x86, uint8 domain)
# What onnxruntime runs for DequantizeLinear → Softmax → QuantizeLinear (any axis, fused into its contrib
# QLinearSoftmax; onnxruntime/contrib_ops/cpu/quantization/qlinear_softmax.cc, uint8 path, which x86 runs after its
# int8 → uint8 rewrite): a float32 table of exp((i − 255 + shift)·s_in), shift = max(0, ln(FLT_MAX / D) − 5) / s_in;
# per row, the table read at (x − max + 255), summed in float32 in order, and each output
# min(255, nearbyint(t·floor(1 / s_out) / sum) + zp_out) in the uint8 domain (int8: min(127, ... + zp_out)).
FLT_MAX = float(np.finfo(np.float32).max)


def ort_exp_table(s_in: float, depth: int) -> np.ndarray:
    """QlinearBuildLookupTableUint32 with a float table (EXP_OUT_DTYPE float): float32 [256]."""
    bit_shift = math.log(float(np.float32(FLT_MAX) / np.float32(depth)))  # float division, then log in double
    bit_shift = max(0.0, bit_shift - 5.0) / float(np.float32(s_in))
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255.0 + bit_shift) * float(np.float32(s_in))).astype(np.float32)


def ort_y_scale(s_out: float) -> np.float32:
    """floor(1.0f / Y_scale), in float32."""
    return np.float32(np.floor(np.float32(1.0) / np.float32(s_out)))


def softmax_ort_reference(x: np.ndarray, axis: int, s_in: float, s_out: float, zp_out: int) -> np.ndarray:
    """int8 → int8 along `axis` as onnxruntime's QLinearSoftmax (plain numpy loops over the rows)."""
    xm = np.moveaxis(np.asarray(x).astype(np.int64), axis, -1)
    table = ort_exp_table(s_in, xm.shape[-1])
    ys = ort_y_scale(s_out)
    rows = xm.reshape(-1, xm.shape[-1])
    out = np.empty_like(rows)
    for r, row in enumerate(rows):
        t = table[row - row.max() + 255]
        total = np.float32(0)
        for v in t:
            total = np.float32(total + v)
        q = np.rint(((t * ys).astype(np.float32) / total).astype(np.float32)).astype(np.int64) + zp_out
        out[r] = np.minimum(q, 127)
    return np.moveaxis(out.reshape(xm.shape), -1, axis).astype(np.int8)


def softmax_ort(x, table, fparams, *, axis: int, zp_out: int):
    """TE extern: onnxruntime's QLinearSoftmax along `axis`. table: float32 [256]; fparams: float32 [floor(1/s_out)]."""
    shape = tuple(int(d) for d in x.shape)
    depth = shape[axis]
    others = [d for k, d in enumerate(shape) if k != axis]
    outer = int(np.prod(others))

    def gen(ins, outs):
        xb, tb, fb, ob = ins[0], ins[1], ins[2], outs[0]
        st = tirx.decl_buffer((1,), "int32", name="mx", scope="global", elem_offset=0)
        acc = tirx.decl_buffer((1,), "float32", name="sum", scope="global", elem_offset=0)

        def index(row, k):
            idx, rest = [], row
            for d in reversed(others):
                idx.append(rest % d)
                rest = rest // d
            idx.reverse()
            return idx[:axis] + [k] + idx[axis:]

        def row_body(b: _Body, row) -> None:
            b.store(st, _i32(-128), [0])
            b.loop(
                depth, lambda lb, k: lb.store(st, tirx.max(_ld(st, [0]), _ld(xb, index(row, k)).astype("int32")), [0])
            )
            b.store(acc, tirx.const(0.0, "float32"), [0])

            def exp_of(k):
                return _ld(tb, [_ld(xb, index(row, k)).astype("int32") - _ld(st, [0]) + 255])

            b.loop(depth, lambda lb, k: lb.store(acc, _ld(acc, [0]) + exp_of(k), [0]))

            def out(lb: _Body, k) -> None:
                v = tirx.nearbyint((exp_of(k) * _ld(fb, [0])) / _ld(acc, [0])).astype("int32") + zp_out
                lb.store(ob, tirx.min(v, _i32(127)).astype("int8"), index(row, k))

            b.loop(depth, out)

        body = _Body({})
        body.loop(outer, row_body, "row")
        return tirx.SeqStmt([_stack_alloc(st), _stack_alloc(acc), body.seq()])

    bufs = [
        tirx.decl_buffer(t.shape, t.dtype, name, elem_offset=0)
        for t, name in ((x, "x"), (table, "exp_table"), (fparams, "fparams"))
    ]
    out = tirx.decl_buffer(x.shape, "int8", "out", elem_offset=0)
    return te.extern(
        [x.shape], [x, table, fparams], gen, name="softmax_ort", dtype="int8", in_buffers=bufs, out_buffers=[out]
    )


def claims(op: Op) -> bool:
    return isinstance(op, (Softmax, SoftmaxOrt))


def te_kernel(graph: Graph, op: Op, scheme: str) -> C.KernelSpec:
    assert isinstance(op, (Softmax, SoftmaxOrt))
    return op.te_kernel(graph, scheme)


def reference(graph: Graph, op: Op, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
    assert isinstance(op, (Softmax, SoftmaxOrt))
    return op.reference(graph, inputs, scheme)


def native_call(graph: Graph, op: Op, scheme: str) -> None:
    """No hand-written softmax: it runs once per inference on a handful of values."""
    return None


BLOCKS: dict[str, dict[str, str]] = {}


# ---------------------------------------------------------------- the operators
@dataclass
class Softmax(Op):
    """int8 softmax over the last axis with TFLite's reference fixed-point arithmetic."""

    beta: float = 1.0

    def params(self, graph: Graph) -> SoftmaxParams:
        return softmax_params(self.beta, graph.tensors[self.inputs[0]].scale)

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        """The fixed-point kernel whatever the scheme: TFLite graphs have only its semantics."""
        return softmax, [exp_table(self.params(graph))], {}

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        return softmax_int8_reference(inputs[0], self.params(graph))


@dataclass
class SoftmaxOrt(Op):
    """ONNX Softmax between Q/DQ along `axis`. "float": onnxruntime's fused QLinearSoftmax (float table of exps,
    float32 row sum, softmax.softmax_ort); "fixed": TFLite's fixed-point softmax (last axis, output scale 1/256 and
    zero point −128, as TFLite requires), else refused."""

    axis: int = -1

    @property
    def kind(self) -> str:
        return "softmax"  # the output is probabilities (manifest output.kind)

    def _fixed_ok(self, graph: Graph) -> None:
        from divqat_tvm.errors import CompileError

        to = graph.tensors[self.output]
        if self.axis != len(to.shape) - 1 or to.scale != OUTPUT_SCALE or to.zero_point != OUTPUT_ZERO_POINT:
            raise CompileError(
                f"Softmax '{self.name}' along axis {self.axis} with output scale {to.scale}, zero point "
                f"{to.zero_point} has no fixed-point (TFLite) form.",
                "Compile with --requant float (onnxruntime's arithmetic), or quantize the softmax output with "
                "scale 1/256, zero point -128 along the last axis.",
            )

    def te_kernel(self, graph: Graph, scheme: str) -> C.KernelSpec:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        if scheme == "fixed":
            self._fixed_ok(graph)
            return softmax, [exp_table(softmax_params(1.0, ti.scale))], {}
        table = ort_exp_table(ti.scale, ti.shape[self.axis])
        return (
            softmax_ort,
            [table, np.array([ort_y_scale(to.scale)], np.float32)],
            dict(axis=self.axis, zp_out=to.zero_point),
        )

    def reference(self, graph: Graph, inputs: list[np.ndarray], scheme: str) -> np.ndarray:
        ti, to = graph.tensors[self.inputs[0]], graph.tensors[self.output]
        if scheme == "fixed":
            self._fixed_ok(graph)
            return softmax_int8_reference(np.asarray(inputs[0]), softmax_params(1.0, ti.scale))
        return softmax_ort_reference(np.asarray(inputs[0]), self.axis, ti.scale, to.scale, to.zero_point)
