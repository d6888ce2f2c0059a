"""MCU-sized CNNs built from `blocks` (ResNet-8, VGG-style, DS-CNN, TinyCNN), a registry, MAC/param counts.

Public API: `build_model(name, in_channels=3, num_classes=10, input_size=32)`, `model_names()`,
`count_macs_params(model, input_shape) -> (macs, params)`.
"""

from divqat_tvm.models.blocks import ConvBNAct, ResidualAdd
from divqat_tvm.models.registry import build_model, count_macs_params, model_names

__all__ = ["ConvBNAct", "ResidualAdd", "build_model", "count_macs_params", "model_names"]
