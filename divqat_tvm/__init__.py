"""divqat-tvm: extraction-resistant int8 CNNs (DivQAT) compiled with Apache TVM for Arm Cortex-M."""

__version__ = "0.1.0"
