"""Teacher training and int8 students (PTQ, QAT, DivQAT) from one recipe: quantize_model → (calibrate | fit).

PTQ calibrates the student's observers and stops. QAT and DivQAT calibrate the same way, then fine-tune the
student's own parameters with the same loop; QAT's objective is cross-entropy, DivQAT's is CE − α·capped KL
against a frozen copy of the teacher. Activation ranges follow an EMA during training and freeze after
`QuantConfig.freeze_observers_after` epochs.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from divqat_tvm.quant.config import DivQATConfig, QuantConfig
from divqat_tvm.quant.prepare import QuantizedModel, quantize_model
from divqat_tvm.train.determinism import numeric
from divqat_tvm.train.loop import TrainConfig, epoch_loader, fit
from divqat_tvm.train.losses import CrossEntropy, divqat_objective


def train_teacher(
    model: nn.Module, train_set: Dataset, config: TrainConfig, resume_path: str | os.PathLike[str] | None = None
) -> list[dict[str, float]]:
    """Train a float model in place with cross-entropy."""
    return fit(
        model,
        train_set,
        config,
        CrossEntropy(),
        resume_path=resume_path,
        fingerprint={"method": "float"},
        desc="teacher",
    )


@numeric
def make_student(
    teacher: nn.Module,
    train_set: Dataset,
    quant: QuantConfig,
    config: TrainConfig,
    divqat: DivQATConfig | None = None,
    resume_path: str | os.PathLike[str] | None = None,
) -> tuple[QuantizedModel, list[dict[str, float]]]:
    """The int8 student of `teacher` by `quant.method`; the teacher itself is never modified.

    Args:
        teacher: the trained float model.
        train_set: data for calibration and fine-tuning.
        quant: quantization settings; `method` selects PTQ / QAT / DivQAT.
        config: fine-tuning settings (`epochs` ignored by PTQ; `seed` also orders calibration).
        divqat: the DivQAT loss settings (required for method "divqat").
        resume_path: per-epoch resume file for QAT / DivQAT.

    Returns:
        (student in train mode, per-epoch history — empty for PTQ).
    """
    if quant.method == "divqat" and divqat is None:
        raise ValueError("method 'divqat' needs a DivQATConfig")
    torch.manual_seed(config.seed)
    calib = epoch_loader(train_set, config, -1)
    student = quantize_model(teacher, quant, calibration=calib)
    if quant.method == "ptq":
        return student, []
    frozen_teacher = None
    objective: Any = CrossEntropy()
    fp: dict[str, Any] = {"method": quant.method, "quant": quant.to_dict()}
    if quant.method == "divqat":
        frozen_teacher = copy.deepcopy(teacher).eval()
        objective = divqat_objective(divqat)  # type: ignore[arg-type]
        fp["divqat"] = divqat.to_dict()  # type: ignore[union-attr]

    def freeze(epoch: int) -> None:
        if quant.freeze_observers_after is not None and epoch >= quant.freeze_observers_after:
            student.freeze_observers()

    history = fit(
        student,
        train_set,
        config,
        objective,
        teacher=frozen_teacher,
        resume_path=resume_path,
        fingerprint=fp,
        on_epoch_start=freeze,
        desc=quant.method,
    )
    return student, history
