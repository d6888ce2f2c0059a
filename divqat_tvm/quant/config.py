"""Configuration of quantization, as plain dataclasses that round-trip through checkpoint metadata.

PTQ, QAT and DivQAT share one `QuantConfig` (how the student is quantized); they differ by `method`, by
the training loss (`DivQATConfig`, used by `divqat_tvm.train`) and by whether training happens at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from divqat_tvm.errors import DivqatError

METHODS = ("ptq", "qat", "divqat")
KL_DIRECTIONS = ("teacher_student", "student_teacher")
#: "paper": CE − α·capped KL (the paper's loss); "nontop": the divergence only among the classes other than the
#: teacher's top-1, plus a margin term that keeps the teacher's top-1 on top (divqat_tvm.train.losses)
OBJECTIVES = ("paper", "nontop")


@dataclass(frozen=True)
class QuantConfig:
    """How a float model becomes an int8 fake-quant student.

    Attributes:
        method: "ptq" (calibrate only), "qat" (train with cross-entropy) or "divqat" (CE − α·KL).
        weight_bits: bits of the symmetric per-channel weights (8: range [-127, 127]).
        activation_bits: bits of the asymmetric per-tensor activations (8: range [-128, 127]).
        observer_momentum: EMA weight of the newest batch's min/max in QAT (0.01 as in torch.ao).
        freeze_observers_after: epochs after which activation ranges stop moving (None: never), so the
            last epochs fine-tune against the ranges that will be exported.
        calibration_batches: batches of training data the observers see before training (and for PTQ,
            the only thing that happens); PTQ observers keep the running min/max, not an EMA.
    """

    method: str = "qat"
    weight_bits: int = 8
    activation_bits: int = 8
    observer_momentum: float = 0.01
    freeze_observers_after: int | None = 2
    calibration_batches: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DivqatError(f"unknown quantization method {self.method!r}.", f"Use one of {', '.join(METHODS)}.")
        if self.weight_bits != 8 or self.activation_bits != 8:
            raise DivqatError(
                f"only 8-bit quantization is supported (got weights {self.weight_bits}, activations {self.activation_bits}).",
                "Use 8 bits: the int8 kernels and the ONNX QDQ export assume int8.",
            )
        if not 0.0 < self.observer_momentum <= 1.0:
            raise DivqatError(f"observer momentum must be in (0, 1], got {self.observer_momentum}.", "Pass e.g. 0.01.")
        if self.freeze_observers_after is not None and self.freeze_observers_after < 0:
            raise DivqatError("freeze_observers_after must be >= 0 or None.", "Pass a number of epochs.")
        if self.calibration_batches < 1:
            raise DivqatError("calibration needs at least one batch.", "Pass calibration_batches >= 1.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class DivQATConfig:
    """The DivQAT loss L = CE(y, s) − α · mean_i min(KL_i, κ) on softmax(z / T).

    Attributes:
        alpha: weight α of the divergence term; 0 makes the loss exactly QAT's cross-entropy.
        kl_direction: "teacher_student" (default) is KL(p_teacher ‖ p_student) — the divergence of the
            attacker's target (the teacher's behaviour) from what the device answers, the quantity an
            extraction attack training on the answers has to undo; "student_teacher" is the reverse.
        kl_cap: per-sample cap κ on the KL (None: uncapped, unstable for α ≥ 1 — see the notes). A sample whose
            divergence already exceeds κ contributes no gradient, so −α·KL is bounded below by −α·κ.
        temperature: T applied to both logit vectors before the softmax (1: the deployed probabilities).
        objective: "paper" (the loss above) or "nontop" (`NonTopDivQATLoss`: KL over the non-top classes, and a
            hinge keeping the teacher's top-1 class ahead by `margin` logits).
        margin: "nontop" only: the logit margin m the teacher's top-1 class must keep over every other class.
        margin_weight: "nontop" only: weight λ of the hinge term.
    """

    alpha: float = 1.0
    kl_direction: str = "teacher_student"
    kl_cap: float | None = 0.3
    temperature: float = 1.0
    objective: str = "paper"
    margin: float = 1.0
    margin_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise DivqatError(
                f"alpha must be >= 0, got {self.alpha}.", "Pass --alpha 0 (plain QAT) or a positive weight."
            )
        if self.kl_direction not in KL_DIRECTIONS:
            raise DivqatError(f"unknown KL direction {self.kl_direction!r}.", f"Use one of {', '.join(KL_DIRECTIONS)}.")
        if self.kl_cap is not None and self.kl_cap <= 0:
            raise DivqatError(f"kl_cap must be positive, got {self.kl_cap}.", "Pass e.g. 0.3, or no cap.")
        if self.temperature <= 0:
            raise DivqatError(f"temperature must be positive, got {self.temperature}.", "Pass e.g. 1.0.")
        if self.objective not in OBJECTIVES:
            raise DivqatError(
                f"unknown DivQAT objective {self.objective!r}.", f"Use --objective {' or '.join(OBJECTIVES)}."
            )
        if self.margin < 0 or self.margin_weight < 0:
            raise DivqatError(
                f"margin and margin weight must be >= 0, got {self.margin}, {self.margin_weight}.",
                "Pass e.g. --margin 1.",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
