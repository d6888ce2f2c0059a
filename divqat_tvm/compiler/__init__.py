"""ONNX QDQ → int8 graph → TVM Relax/TIR → plain C for Cortex-M (see docs/contracts.md, "Compiled artifact")."""
