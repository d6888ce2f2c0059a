"""Teacher training, PTQ / QAT / DivQAT students, checkpoints, evaluation.

Public API: `TrainConfig`, `fit`, `train_teacher`, `make_student`, `save_checkpoint`, `load_checkpoint`,
and the metrics in `divqat_tvm.train.metrics`.
"""

from divqat_tvm.train.checkpoint import load_checkpoint, save_checkpoint
from divqat_tvm.train.loop import TrainConfig, fit
from divqat_tvm.train.recipes import make_student, train_teacher

__all__ = ["TrainConfig", "fit", "load_checkpoint", "make_student", "save_checkpoint", "train_teacher"]
