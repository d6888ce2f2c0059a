"""Read an int8 TFLite flatbuffer into the int8 `Graph` the ONNX path builds (NHWC, TFLite semantics).

The flatbuffer is read with the `tflite` package (the schema's generated reader), not with TVM's Relax
TFLite frontend: that frontend turns every quantized op into dequantize → float op → quantize (its int8
average pool even truncates instead of rounding, and its softmax is float), so the integer semantics
would have to be pattern-matched back out of a lossy float graph. Reading the flatbuffer gives each
operator, its index, options and exact quantization directly.

Semantics follow TFLite's reference kernels (what LiteRT's BUILTIN_REF resolver and TFLite Micro run):
per-channel CONV_2D / DEPTHWISE_CONV_2D with TFLite's SAME/VALID padding arithmetic, FULLY_CONNECTED, ADD
(left shift 20, per-input multipliers), AVERAGE_POOL_2D (TfliteAvgPool), MAX_POOL_2D, RESHAPE, SOFTMAX
(fixed point), requantization with the 32-bit fixed-point multiplier (compile with requant "fixed").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from divqat_tvm.compiler.graph import QMAX, QMIN, Add, Conv2D, Graph, MaxPool, Op, QTensor, Reshape
from divqat_tvm.compiler.ops import softmax as sm
from divqat_tvm.compiler.ops.dense import TfliteDense
from divqat_tvm.compiler.ops.pooling import TfliteAvgPool
from divqat_tvm.compiler.ops.softmax import Softmax
from divqat_tvm.errors import CompileError

if TYPE_CHECKING:
    from divqat_tvm.compiler.tune import Tuning

TFLITE_MAGIC = b"TFL3"
SUPPORTED_TFLITE_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "RESHAPE",
    "SOFTMAX",
)
_INT8, _INT32 = 9, 2  # tflite.TensorType values


def is_tflite(path: str | Path) -> bool:
    """True for a `.tflite` file name or a file whose flatbuffer identifier is TFL3."""
    p = Path(path)
    if p.suffix.lower() == ".tflite":
        return True
    try:
        with p.open("rb") as f:
            return f.read(8)[4:8] == TFLITE_MAGIC
    except OSError:
        return False


def load_tflite(path: str | Path) -> Any:
    """The flatbuffer's root `tflite.Model`, or a CompileError for a missing or foreign file."""
    import tflite

    p = Path(path)
    if not p.is_file():
        raise CompileError(f"model file '{p}' does not exist.", "Pass the path of an int8 .tflite file.")
    buf = p.read_bytes()
    if len(buf) == 0:
        raise CompileError(f"model file '{p}' is empty (0 bytes).", "Copy or convert the model again.")
    if len(buf) < 8 or buf[4:8] != TFLITE_MAGIC:
        raise CompileError(f"'{p}' is not a TFLite flatbuffer (no TFL3 identifier).", "Pass a .tflite model file.")
    return tflite.Model.GetRootAsModel(buf, 0)


def builtin_name(model: Any, op: Any) -> str:
    """The BUILTIN_OPERATOR name of an operator (e.g. "CONV_2D"), or CUSTOM:<code>."""
    from tflite.BuiltinOperator import BuiltinOperator

    oc = model.OperatorCodes(op.OpcodeIndex())
    code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    name = names.get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        return f"CUSTOM:{(oc.CustomCode() or b'').decode(errors='replace')}"
    return name


@dataclass
class _Ctx:
    """Reader state: the model, its one subgraph, and the graph under construction."""

    model: Any
    sg: Any
    tensors: dict[str, QTensor]
    ops: list[Op]

    def tensor(self, idx: int) -> Any:
        return self.sg.Tensors(int(idx))

    def const(self, idx: int) -> np.ndarray | None:
        """A constant tensor's data (numpy, its own dtype and shape) or None when it has no buffer data."""
        t = self.tensor(idx)
        buf = self.model.Buffers(t.Buffer())
        if buf is None or buf.DataLength() == 0:
            return None
        dtype = {_INT8: np.int8, _INT32: np.int32}.get(t.Type())
        if dtype is None:
            return None
        return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype).reshape(tuple(int(d) for d in t.ShapeAsNumpy()))


def tensor_name(idx: int) -> str:
    return f"t{int(idx)}"


def _quant(t: Any) -> tuple[np.ndarray, np.ndarray, int]:
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), 0
    zp = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(q.ScaleLength(), np.int64)
    return np.asarray(q.ScaleAsNumpy(), np.float32), np.asarray(zp, np.int64), int(q.QuantizedDimension())


def _activation(ctx: _Ctx, idx: int, where: str) -> QTensor:
    """The QTensor of an int8 activation tensor (adds it to the graph on first use)."""
    name = tensor_name(idx)
    if name in ctx.tensors:
        return ctx.tensors[name]
    t = ctx.tensor(idx)
    if t.Type() != _INT8:
        raise CompileError(
            f"{where}: tensor '{t.Name().decode(errors='replace')}' is not int8 (TFLite type {t.Type()}).",
            "Convert the model with full-integer int8 quantization (int8 input and output).",
        )
    scale, zp, _ = _quant(t)
    if scale.size != 1:
        raise CompileError(
            f"{where}: activation '{t.Name().decode(errors='replace')}' is not per-tensor quantized.",
            "Convert the model with full-integer int8 quantization.",
        )
    shape = tuple(int(d) for d in t.ShapeAsNumpy())
    layout = {4: "NHWC", 3: "NTC"}.get(len(shape), "NC")
    qt = QTensor(name, shape, float(scale[0]), int(zp[0]), layout)
    ctx.tensors[name] = qt
    return qt


def activation_range(fused: int, out: QTensor, where: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: the clamp a fused activation becomes."""
    from tflite.ActivationFunctionType import ActivationFunctionType as A

    def q(f: float) -> int:
        v = float(np.float32(f) / np.float32(out.scale))
        return out.zero_point + int(math.copysign(math.floor(abs(v) + 0.5), v))  # TfLiteRound: half away from 0

    if fused == A.NONE:
        return QMIN, QMAX
    if fused == A.RELU:
        return max(QMIN, q(0.0)), QMAX
    if fused == A.RELU6:
        return max(QMIN, q(0.0)), min(QMAX, q(6.0))
    if fused == A.RELU_N1_TO_1:
        return max(QMIN, q(-1.0)), min(QMAX, q(1.0))
    raise CompileError(f"{where}: fused activation {fused} is not supported.", "Use NONE, RELU, RELU6 or RELU_N1_TO_1.")


def same_padding(in_size: int, filt: int, stride: int, dilation: int, out_size: int) -> tuple[int, int]:
    """TFLite ComputePaddingWithOffset: (before, after); the odd pixel goes after."""
    eff = (filt - 1) * dilation + 1
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def out_size(padding: str, in_size: int, filt: int, stride: int, dilation: int) -> int:
    """TFLite ComputeOutSize."""
    eff = (filt - 1) * dilation + 1
    return (in_size + stride - 1) // stride if padding == "SAME" else (in_size + stride - eff) // stride


def _padding(
    kind: int, ih: int, iw: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, out: QTensor, where: str
) -> tuple[int, int, int, int]:
    from tflite.Padding import Padding

    mode = "SAME" if kind == Padding.SAME else "VALID"
    oh, ow = out_size(mode, ih, kh, sh, dh), out_size(mode, iw, kw, sw, dw)
    if (oh, ow) != tuple(out.shape[1:3]):
        raise CompileError(
            f"{where}: output is {out.shape[1:3]} but {mode} padding gives {(oh, ow)}.",
            "The model file is inconsistent; convert it again.",
        )
    if mode == "VALID":
        return 0, 0, 0, 0
    pt, pb = same_padding(ih, kh, sh, dh, oh)
    pl, pr = same_padding(iw, kw, sw, dw, ow)
    return pt, pl, pb, pr


def _options(op: Any, cls: Any) -> Any:
    opts = cls()
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts.Init(table.Bytes, table.Pos)
    return opts


def _weights(ctx: _Ctx, idx: int, axis: int, channels: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(int8 data, float32 per-channel scales of length `channels`) of a symmetric int8 weight tensor."""
    w = ctx.const(idx)
    t = ctx.tensor(idx)
    if w is None or t.Type() != _INT8:
        raise CompileError(
            f"{where}: the weights are not a constant int8 tensor.",
            "Convert the model with full-integer int8 quantization (constant weights).",
        )
    scale, zp, qdim = _quant(t)
    if np.any(zp != 0):
        raise CompileError(
            f"{where}: the weights have a non-zero zero point.", "TFLite int8 weights are symmetric; convert again."
        )
    if scale.size == 1:
        scale = np.full(channels, scale[0], np.float32)
    elif scale.size != channels or qdim != axis:
        raise CompileError(
            f"{where}: weight scales ({scale.size} along axis {qdim}) do not match {channels} output channels.",
            "Convert the model again.",
        )
    return w, scale.astype(np.float32)


def _bias(ctx: _Ctx, op: Any, channels: int, where: str) -> np.ndarray:
    ins = op.InputsAsNumpy()
    if len(ins) < 3 or ins[2] < 0:
        return np.zeros(channels, np.int32)
    b = ctx.const(ins[2])
    if b is None or ctx.tensor(ins[2]).Type() != _INT32:
        raise CompileError(
            f"{where}: the bias is not a constant int32 tensor.", "Convert with int8 weights and int32 bias."
        )
    return b.reshape(-1).astype(np.int32)


def _conv(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    from tflite.Conv2DOptions import Conv2DOptions
    from tflite.DepthwiseConv2DOptions import DepthwiseConv2DOptions

    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    x, y = _activation(ctx, ins[0], where), _activation(ctx, outs[0], where)
    depthwise = name == "DEPTHWISE_CONV_2D"
    o = _options(op, DepthwiseConv2DOptions if depthwise else Conv2DOptions)
    _, ih, iw, cin = x.shape
    cout = y.shape[3]
    if depthwise:
        w, ws = _weights(ctx, ins[1], 3, cout, where)  # [1, KH, KW, Cin·M]
        weight = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # → [Cout, 1, KH, KW]
        groups = cin
        if cout % cin:
            raise CompileError(
                f"{where}: {cout} output channels is not a multiple of {cin} input channels.",
                "Convert the model again.",
            )
    else:
        w, ws = _weights(ctx, ins[1], 0, cout, where)  # [Cout, KH, KW, Cin]
        weight = np.ascontiguousarray(w.transpose(0, 3, 1, 2))  # → OIHW
        groups = 1
        if w.shape[3] != cin:
            raise CompileError(
                f"{where}: grouped CONV_2D ({cin} inputs, filter depth {w.shape[3]}) is not supported.",
                "Use DEPTHWISE_CONV_2D or an ungrouped convolution.",
            )
    kh, kw = weight.shape[2], weight.shape[3]
    sh, sw, dh, dw = o.StrideH(), o.StrideW(), o.DilationHFactor() or 1, o.DilationWFactor() or 1
    pad = _padding(o.Padding(), ih, iw, kh, kw, sh, sw, dh, dw, y, where)
    lo, hi = activation_range(o.FusedActivationFunction(), y, where)
    ctx.ops.append(
        Conv2D(
            f"{name.lower()}_{i}",
            [x.name],
            y.name,
            weight=weight,
            weight_scale=ws,
            bias=_bias(ctx, op, cout, where),
            stride=(sh, sw),
            padding=pad,
            dilation=(dh, dw),
            groups=groups,
            act_min=lo,
            act_max=hi,
        )
    )


def _fully_connected(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    from tflite.FullyConnectedOptions import FullyConnectedOptions

    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    o = _options(op, FullyConnectedOptions)
    if o is not None and o.WeightsFormat() != 0:
        raise CompileError(
            f"{where}: shuffled FULLY_CONNECTED weights are not supported.", "Convert with the default weights format."
        )
    x, y = _activation(ctx, ins[0], where), _activation(ctx, outs[0], where)
    w, ws = _weights(ctx, ins[1], 0, int(ctx.tensor(ins[1]).ShapeAsNumpy()[0]), where)
    if len(y.shape) != 2 or x.nbytes != y.shape[0] * w.shape[1]:
        raise CompileError(
            f"{where}: FULLY_CONNECTED from {x.shape} to {y.shape} with weights {w.shape} is not supported.",
            "Use a 2-D [batch, features] output (keep_num_dims false).",
        )
    src = x.name
    if x.shape != (y.shape[0], w.shape[1]):  # TFLite flattens the input implicitly; make it explicit
        flat = QTensor(f"{x.name}_flat", (y.shape[0], w.shape[1]), x.scale, x.zero_point, "NC")
        ctx.tensors[flat.name] = flat
        ctx.ops.append(Reshape(f"reshape_{i}_in", [x.name], flat.name))
        src = flat.name
    lo, hi = activation_range(o.FusedActivationFunction() if o is not None else 0, y, where)
    ctx.ops.append(
        TfliteDense(
            f"fully_connected_{i}",
            [src],
            y.name,
            weight=np.ascontiguousarray(w),
            weight_scale=ws,
            bias=_bias(ctx, op, w.shape[0], where),
            act_min=lo,
            act_max=hi,
        )
    )


def _add(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    from tflite.AddOptions import AddOptions

    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    a, b, y = (_activation(ctx, t, where) for t in (ins[0], ins[1], outs[0]))
    if a.shape != b.shape or a.shape != y.shape:
        raise CompileError(
            f"{where}: ADD of shapes {a.shape} and {b.shape} needs broadcasting, which is not supported.",
            "Use an elementwise ADD of equal shapes.",
        )
    o = _options(op, AddOptions)
    lo, hi = activation_range(o.FusedActivationFunction() if o is not None else 0, y, where)
    ctx.ops.append(Add(f"add_{i}", [a.name, b.name], y.name, act_min=lo, act_max=hi))


def _pool(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    from tflite.Pool2DOptions import Pool2DOptions

    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    x, y = _activation(ctx, ins[0], where), _activation(ctx, outs[0], where)
    o = _options(op, Pool2DOptions)
    kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
    pad = _padding(o.Padding(), x.shape[1], x.shape[2], kh, kw, sh, sw, 1, 1, y, where)
    lo, hi = activation_range(o.FusedActivationFunction(), y, where)
    if name == "AVERAGE_POOL_2D":
        ctx.ops.append(
            TfliteAvgPool(
                f"average_pool_2d_{i}",
                [x.name],
                y.name,
                kernel=(kh, kw),
                stride=(sh, sw),
                padding=pad,
                act_min=lo,
                act_max=hi,
            )
        )
        return
    if (x.scale, x.zero_point) != (y.scale, y.zero_point):
        raise CompileError(f"{where}: MAX_POOL_2D changes the quantization.", "Convert the model again.")
    if (lo, hi) != (QMIN, QMAX):
        raise CompileError(
            f"{where}: MAX_POOL_2D with a fused activation that clamps is not supported.",
            "Convert without the fused activation on the pooling.",
        )
    ctx.ops.append(MaxPool(f"max_pool_2d_{i}", [x.name], y.name, kernel=(kh, kw), stride=(sh, sw), padding=pad))


def _reshape(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    x, y = _activation(ctx, ins[0], where), _activation(ctx, outs[0], where)
    if x.nbytes != y.nbytes or (x.scale, x.zero_point) != (y.scale, y.zero_point):
        raise CompileError(
            f"{where}: RESHAPE from {x.shape} to {y.shape} changes the size or the quantization.",
            "Convert the model again.",
        )
    ctx.ops.append(Reshape(f"reshape_{i}", [x.name], y.name))


def _softmax(ctx: _Ctx, op: Any, i: int, name: str, where: str) -> None:
    from tflite.SoftmaxOptions import SoftmaxOptions

    ins, outs = op.InputsAsNumpy(), op.OutputsAsNumpy()
    x, y = _activation(ctx, ins[0], where), _activation(ctx, outs[0], where)
    if y.zero_point != sm.OUTPUT_ZERO_POINT or np.float32(y.scale) != np.float32(sm.OUTPUT_SCALE):
        raise CompileError(
            f"{where}: int8 SOFTMAX output has scale {y.scale} and zero point {y.zero_point}.",
            "TFLite requires scale 1/256 and zero point -128; convert the model again.",
        )
    o = _options(op, SoftmaxOptions)
    beta = float(o.Beta()) if o is not None else 1.0
    sm.softmax_params(beta, x.scale)  # raises a CompileError for a scale TFLite itself rejects
    ctx.ops.append(Softmax(f"softmax_{i}", [x.name], y.name, beta=beta))


_READERS: dict[str, Callable[[_Ctx, Any, int, str, str], None]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
}


def check_supported(model: Any) -> None:
    """Raise CompileError naming the first operator (and its index) we cannot compile."""
    sg = model.Subgraphs(0)
    for i in range(sg.OperatorsLength()):
        name = builtin_name(model, sg.Operators(i))
        if name not in _READERS:
            raise CompileError(
                f"unsupported TFLite operator {name} (operator index {i}).",
                f"The compiler handles {', '.join(SUPPORTED_TFLITE_OPS)} on int8 tensors.",
            )


def import_tflite(path: str | Path) -> Graph:
    """int8 .tflite file → int8 Graph (NHWC input, the model's own output: logits or softmax probabilities)."""
    try:
        return _import_tflite(path)
    except CompileError:
        raise
    except Exception as e:  # the flatbuffer reader fails on offsets past the end of a truncated file
        raise CompileError(
            f"'{path}' is not a readable TFLite model; is it truncated? ({type(e).__name__})",
            "Copy or convert the model again.",
        ) from e


def _import_tflite(path: str | Path) -> Graph:
    model = load_tflite(path)
    if model.SubgraphsLength() != 1:
        raise CompileError(f"'{path}' has {model.SubgraphsLength()} subgraphs.", "Compile a model with one subgraph.")
    sg = model.Subgraphs(0)
    if sg.InputsLength() != 1 or sg.OutputsLength() != 1:
        raise CompileError(
            f"'{path}' has {sg.InputsLength()} inputs and {sg.OutputsLength()} outputs.",
            "Compile a model with one image input and one output.",
        )
    check_supported(model)
    ctx = _Ctx(model, sg, {}, [])
    x = _activation(ctx, sg.Inputs(0), "the model input")
    if len(x.shape) not in (2, 3, 4) or x.shape[0] != 1 or any(d <= 0 for d in x.shape):
        raise CompileError(
            f"the model input has shape {x.shape}, not [1, N], [1, T, C] or [1, H, W, C].",
            "Convert with a batch-1 input of fixed size ([1, features], [1, steps, channels] or NHWC).",
        )
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = builtin_name(model, op)
        _READERS[name](ctx, op, i, name, f"operator {i} ({name})")
    out = tensor_name(sg.Outputs(0))
    if out not in ctx.tensors or not any(o.output == out for o in ctx.ops):
        raise CompileError("the model output is not computed by any supported operator.", "Convert the model again.")
    return Graph(ctx.tensors, ctx.ops, x.name, out, layout="NHWC", source=str(path))


def output_kind(graph: Graph) -> str:
    """ "probabilities" when the graph ends in a softmax (its int8 output already sums to ~1), else "logits"."""
    last = next(op for op in reversed(graph.ops) if op.output == graph.output)
    return "probabilities" if isinstance(last, Softmax) else "logits"


def input_space_meta(graph: Graph) -> dict[str, Any]:
    """Checkpoint-style meta for a TFLite model: source, input_shape [C, H, W], num_classes, and — for the
    raw-pixel convention (input scale 1, zero point −128: int8 = pixel − 128) — the normalisation that turns
    [0, 1] images into that space (mean 0, std 1/255), so the oracle's float input is the pixel value."""
    t = graph.input_tensor
    if len(t.shape) != 4:  # [1, N] (fully connected) or [1, T, C]: the input as it is
        return {
            "source": "tflite",
            "input_shape": list(t.shape[1:]),
            "num_classes": int(graph.output_tensor.shape[-1]),
            "output_kind": output_kind(graph),
        }
    _, h, w, c = t.shape
    meta: dict[str, Any] = {
        "source": "tflite",
        "input_shape": [c, h, w],
        "num_classes": int(graph.output_tensor.shape[-1]),
        "output_kind": output_kind(graph),
    }
    if t.scale == 1.0 and t.zero_point == -128:
        meta["input_space"] = "pixels 0..255 (int8 = pixel - 128)"
        meta["normalization"] = {"mean": [0.0] * c, "std": [1.0 / 255.0] * c}
    return meta


def compile_tflite(
    model: str | Path,
    out_dir: str | Path,
    *,
    requant: str = "fixed",
    prefix: str = "model",
    target: str | None = None,
    core: str | None = None,
    meta: dict[str, Any] | None = None,
    kernels: str = "native",
    tuning: Tuning | None = None,
) -> dict[str, Any]:
    """Import an int8 .tflite model and generate its C library (like pipeline.compile_onnx).

    TFLite's semantics are fixed-point (and LiteRT's double-rounded FC), so only requant "fixed" exists here.
    """
    from divqat_tvm.compiler.generate import generate
    from divqat_tvm.compiler.onnx_import import file_sha256

    if requant != "fixed":
        raise CompileError(
            f"requantization '{requant}' does not apply to a TFLite model.",
            "Compile .tflite models with --requant fixed (TFLite's own integer arithmetic).",
        )
    model = Path(model)
    graph = import_tflite(model)
    info = {
        "name": Path(out_dir).name,
        "target": target,
        "core": core,
        "source_model": {"path": str(model), "sha256": file_sha256(model), "format": "tflite"},
        "meta": {**input_space_meta(graph), **(meta or {})},
    }
    return generate(graph, out_dir, requant=requant, prefix=prefix, manifest=info, kernels=kernels, tuning=tuning)
