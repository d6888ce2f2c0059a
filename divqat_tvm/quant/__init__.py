"""int8 quantization in the TFLite / CMSIS-NN convention: primitives, fake quant, BN folding, the student, export.

Public API: `QuantConfig`, `DivQATConfig`, `quantize_model(model, config, calibration=None) -> QuantizedModel`,
`export_onnx(student, path, input_shape, meta=None)`, and the integer math in `divqat_tvm.quant.primitives`.
"""

from divqat_tvm.quant.config import DivQATConfig, QuantConfig
from divqat_tvm.quant.export import compare_with_ort, export_onnx, to_onnx
from divqat_tvm.quant.prepare import QuantizedModel, quantize_model, quantized_ops

__all__ = [
    "DivQATConfig",
    "QuantConfig",
    "QuantizedModel",
    "compare_with_ort",
    "export_onnx",
    "quantize_model",
    "quantized_ops",
    "to_onnx",
]
