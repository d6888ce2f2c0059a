"""Tiny int8 TFLite models written with the flatbuffer schema's builder, for the TFLite importer's tests.

The MLPerf ResNet-8 has no depthwise conv, max pool, SAME padding with stride 2, padded average pool,
per-channel FC or RELU6; `zoo_model()` has all of them, so LiteRT's BUILTIN_REF kernels can check each
against our reference and compiled code. Weights and quantization are random but seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite
from tflite.ActivationFunctionType import ActivationFunctionType as Act
from tflite.BuiltinOperator import BuiltinOperator as B
from tflite.BuiltinOptions import BuiltinOptions as BO
from tflite.Padding import Padding


@dataclass
class T:
    """A tensor: int8/int32 data (constants) or None (activations), quantization per tensor or per axis."""

    shape: tuple[int, ...]
    scale: list[float]
    zero_point: list[int]
    dtype: str = "int8"
    data: np.ndarray | None = None
    qdim: int = 0


@dataclass
class O:  # noqa: E742  (a one-letter name keeps the model tables readable)
    """An operator: builtin code, tensor indices, builtin options (type, option-builder callback)."""

    code: int
    inputs: list[int]
    outputs: list[int]
    options: tuple[int, object] | None = None


@dataclass
class ModelSpec:
    tensors: list[T] = field(default_factory=list)
    ops: list[O] = field(default_factory=list)

    def add(self, t: T) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1


def _vec(b: flatbuffers.Builder, start, items, prepend) -> int:
    start(b, len(items))
    for v in reversed(items):
        prepend(v)
    return b.EndVector()


def serialize(spec: ModelSpec, inputs: list[int], outputs: list[int]) -> bytes:
    """The .tflite bytes of `spec` (schema version 3, one subgraph)."""
    b = flatbuffers.Builder(1024)
    buffers = [0]
    buf_index = []
    for t in spec.tensors:
        if t.data is None:
            buf_index.append(0)
            continue
        raw = np.ascontiguousarray(t.data, dtype=np.int8 if t.dtype == "int8" else np.int32).tobytes()
        data = b.CreateNumpyVector(np.frombuffer(raw, np.uint8))
        tflite.BufferStart(b)
        tflite.BufferAddData(b, data)
        buffers.append(tflite.BufferEnd(b))
        buf_index.append(len(buffers) - 1)
    tflite.BufferStart(b)
    buffers[0] = tflite.BufferEnd(b)

    tensor_offs = []
    for i, t in enumerate(spec.tensors):
        name = b.CreateString(f"tensor_{i}")
        shape = b.CreateNumpyVector(np.array(t.shape, np.int32))
        sc = b.CreateNumpyVector(np.array(t.scale, np.float32))
        zp = b.CreateNumpyVector(np.array(t.zero_point, np.int64))
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, sc)
        tflite.QuantizationParametersAddZeroPoint(b, zp)
        tflite.QuantizationParametersAddQuantizedDimension(b, t.qdim)
        q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, 9 if t.dtype == "int8" else 2)
        tflite.TensorAddBuffer(b, buf_index[i])
        tflite.TensorAddName(b, name)
        tflite.TensorAddQuantization(b, q)
        tensor_offs.append(tflite.TensorEnd(b))

    codes = sorted({o.code for o in spec.ops})
    code_offs = []
    for c in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(c, 127))
        tflite.OperatorCodeAddBuiltinCode(b, c)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offs.append(tflite.OperatorCodeEnd(b))

    op_offs = []
    for o in spec.ops:
        opt = o.options[1](b) if o.options else None
        ins = b.CreateNumpyVector(np.array(o.inputs, np.int32))
        outs = b.CreateNumpyVector(np.array(o.outputs, np.int32))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(o.code))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opt is not None:
            tflite.OperatorAddBuiltinOptionsType(b, o.options[0])
            tflite.OperatorAddBuiltinOptions(b, opt)
        op_offs.append(tflite.OperatorEnd(b))

    t_vec = _vec(b, tflite.SubGraphStartTensorsVector, tensor_offs, b.PrependUOffsetTRelative)
    o_vec = _vec(b, tflite.SubGraphStartOperatorsVector, op_offs, b.PrependUOffsetTRelative)
    in_vec = b.CreateNumpyVector(np.array(inputs, np.int32))
    out_vec = b.CreateNumpyVector(np.array(outputs, np.int32))
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddOperators(b, o_vec)
    sg = tflite.SubGraphEnd(b)
    sg_vec = _vec(b, tflite.ModelStartSubgraphsVector, [sg], b.PrependUOffsetTRelative)
    c_vec = _vec(b, tflite.ModelStartOperatorCodesVector, code_offs, b.PrependUOffsetTRelative)
    b_vec = _vec(b, tflite.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)
    desc = b.CreateString("divqat-tvm test model")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, c_vec)
    tflite.ModelAddSubgraphs(b, sg_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, b_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ---------------------------------------------------------------- option builders
def conv_opts(padding: int, stride: int, act: int, dilation: int = 1):
    def f(b):
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, padding)
        tflite.Conv2DOptionsAddStrideH(b, stride)
        tflite.Conv2DOptionsAddStrideW(b, stride)
        tflite.Conv2DOptionsAddDilationHFactor(b, dilation)
        tflite.Conv2DOptionsAddDilationWFactor(b, dilation)
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.Conv2DOptionsEnd(b)

    return BO.Conv2DOptions, f


def dw_opts(padding: int, stride: int, mult: int, act: int):
    def f(b):
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, padding)
        tflite.DepthwiseConv2DOptionsAddStrideH(b, stride)
        tflite.DepthwiseConv2DOptionsAddStrideW(b, stride)
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, mult)
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
        return tflite.DepthwiseConv2DOptionsEnd(b)

    return BO.DepthwiseConv2DOptions, f


def pool_opts(padding: int, stride: int, k: int, act: int = Act.NONE):
    def f(b):
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, padding)
        tflite.Pool2DOptionsAddStrideH(b, stride)
        tflite.Pool2DOptionsAddStrideW(b, stride)
        tflite.Pool2DOptionsAddFilterHeight(b, k)
        tflite.Pool2DOptionsAddFilterWidth(b, k)
        tflite.Pool2DOptionsAddFusedActivationFunction(b, act)
        return tflite.Pool2DOptionsEnd(b)

    return BO.Pool2DOptions, f


def add_opts(act: int):
    def f(b):
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, act)
        return tflite.AddOptionsEnd(b)

    return BO.AddOptions, f


def fc_opts(act: int):
    def f(b):
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        return tflite.FullyConnectedOptionsEnd(b)

    return BO.FullyConnectedOptions, f


def softmax_opts(beta: float):
    def f(b):
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, beta)
        return tflite.SoftmaxOptionsEnd(b)

    return BO.SoftmaxOptions, f


# ---------------------------------------------------------------- models
def _act(spec: ModelSpec, shape, rng, scale_range=(0.02, 0.08), zp=None) -> int:
    s = float(np.float32(rng.uniform(*scale_range)))
    return spec.add(T(tuple(shape), [s], [int(rng.integers(-20, 20)) if zp is None else zp]))


def _weights(spec: ModelSpec, shape, axis: int, rng) -> int:
    ch = shape[axis]
    w = rng.integers(-127, 128, shape).astype(np.int8)
    scales = [float(np.float32(v)) for v in rng.uniform(0.002, 0.01, ch)]
    return spec.add(T(tuple(shape), scales, [0] * ch, data=w, qdim=axis))


def _bias(spec: ModelSpec, n: int, rng) -> int:
    return spec.add(T((n,), [1.0] * n, [0] * n, dtype="int32", data=rng.integers(-3000, 3000, n).astype(np.int32)))


def zoo_model(seed: int = 0, softmax: bool = True) -> bytes:
    """[1,9,9,3] → DW 3×3 s2 SAME ×2 RELU6 → CONV 3×3 s1 SAME RELU → ADD(skip via 1×1) RELU → MAX 2×2 s2 SAME
    → AVG 3×3 s1 SAME (padded windows) → RESHAPE → FC per-channel → SOFTMAX (β = 0.7)."""
    rng = np.random.default_rng(seed)
    s = ModelSpec()
    x = s.add(T((1, 9, 9, 3), [1.0], [-128]))
    dw_w = _weights(s, (1, 3, 3, 6), 3, rng)
    dw_out = _act(s, (1, 5, 5, 6), rng, zp=-128)
    s.ops.append(O(B.DEPTHWISE_CONV_2D, [x, dw_w, _bias(s, 6, rng)], [dw_out], dw_opts(Padding.SAME, 2, 2, Act.RELU6)))
    c_w = _weights(s, (8, 3, 3, 6), 0, rng)
    c_out = _act(s, (1, 5, 5, 8), rng, zp=-128)
    s.ops.append(O(B.CONV_2D, [dw_out, c_w, _bias(s, 8, rng)], [c_out], conv_opts(Padding.SAME, 1, Act.RELU)))
    p_w = _weights(s, (8, 1, 1, 6), 0, rng)
    p_out = _act(s, (1, 5, 5, 8), rng)
    s.ops.append(O(B.CONV_2D, [dw_out, p_w, _bias(s, 8, rng)], [p_out], conv_opts(Padding.VALID, 1, Act.NONE)))
    a_out = _act(s, (1, 5, 5, 8), rng, zp=-128)
    s.ops.append(O(B.ADD, [c_out, p_out], [a_out], add_opts(Act.RELU)))
    m_out = s.add(T((1, 3, 3, 8), s.tensors[a_out].scale, s.tensors[a_out].zero_point))
    s.ops.append(O(B.MAX_POOL_2D, [a_out], [m_out], pool_opts(Padding.SAME, 2, 2)))
    v_out = s.add(T((1, 3, 3, 8), s.tensors[m_out].scale, s.tensors[m_out].zero_point))
    s.ops.append(O(B.AVERAGE_POOL_2D, [m_out], [v_out], pool_opts(Padding.SAME, 1, 3)))
    shape_c = s.add(T((2,), [], [], dtype="int32", data=np.array([1, 72], np.int32)))
    r_out = s.add(T((1, 72), s.tensors[v_out].scale, s.tensors[v_out].zero_point))
    s.ops.append(O(B.RESHAPE, [v_out, shape_c], [r_out]))
    f_w = _weights(s, (10, 72), 0, rng)
    f_out = _act(s, (1, 10), rng, scale_range=(0.05, 0.1))
    s.ops.append(O(B.FULLY_CONNECTED, [r_out, f_w, _bias(s, 10, rng)], [f_out], fc_opts(Act.NONE)))
    if not softmax:
        return serialize(s, [x], [f_out])
    sm_out = s.add(T((1, 10), [1.0 / 256], [-128]))
    s.ops.append(O(B.SOFTMAX, [f_out], [sm_out], softmax_opts(0.7)))
    return serialize(s, [x], [sm_out])


def softmax_model(scale: float, beta: float = 1.0, depth: int = 10) -> bytes:
    """int8 [1, 1, 1, depth] → SOFTMAX (last axis): any input row can be tried, so the fixed-point math is
    covered far more widely than through a trained model's logits."""
    s = ModelSpec()
    x = s.add(T((1, 1, 1, depth), [float(np.float32(scale))], [3]))
    y = s.add(T((1, 1, 1, depth), [1.0 / 256], [-128]))
    s.ops.append(O(B.SOFTMAX, [x], [y], softmax_opts(beta)))
    return serialize(s, [x], [y])
