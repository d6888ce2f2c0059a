"""The one training loop: teacher training, QAT and DivQAT differ only by the objective (and the teacher).

Deterministic for a seed on CPU, whatever the caller's torch thread count: `fit` runs on a fixed number of
intra-op threads (`train.determinism`). The global torch RNG is seeded once at the start (augmentation draws from
it), each epoch shuffles with its own generator seeded from (seed, epoch), and the per-epoch resume file holds
the model, optimizer, scheduler, finished epochs and the torch RNG state — so a run killed after epoch k and
restarted finishes with exactly the weights of an uninterrupted run. Nothing here draws from numpy's or
Python's RNG, so their states are not saved.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from divqat_tvm.errors import CheckpointError, DivqatError
from divqat_tvm.fileio import atomic_write_bytes
from divqat_tvm.train.determinism import numeric

RESUME_FORMAT = "divqat-tvm-resume"
#: per-epoch stats that measure the machine, not the model: kept out of checkpoints (see `split_timing`)
TIMING_KEYS = ("seconds", "cpu_seconds", "images_per_s")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every kind of training.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step.
        optimizer: "sgd" (momentum, Nesterov off) or "adam".
        lr: peak learning rate; a cosine schedule takes it to 0 over all steps.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 weight decay.
        seed: seeds the global torch RNG and the per-epoch shuffles.
        device: "auto" (CUDA when present, else CPU), "cpu" or "cuda[:i]".
        progress: show a progress bar with the running loss and accuracy.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise DivqatError(
                f"epochs must be >= 0 and batch size >= 1 (got {self.epochs}, {self.batch_size}).",
                "Fix --epochs / --batch-size.",
            )
        if self.optimizer not in OPTIMIZERS:
            raise DivqatError(f"unknown optimizer {self.optimizer!r}.", f"Use one of {', '.join(OPTIMIZERS)}.")
        if self.lr <= 0:
            raise DivqatError(f"learning rate must be positive, got {self.lr}.", "Pass e.g. --lr 0.01.")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a resume file to continue this run (progress/device may differ)."""
        d = asdict(self)
        d.pop("progress")
        d.pop("device")
        return d


def split_timing(history: list[dict[str, float]]) -> tuple[list[dict[str, float]], list[dict[str, float | None]]]:
    """(history without timings, per-epoch timings): the first goes into checkpoints, which are then bit-identical
    for a seed; the second into a separate `.timing.json` file."""
    kept = [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]
    timing = [{"epoch": h.get("epoch"), **{k: h[k] for k in TIMING_KEYS if k in h}} for h in history]
    return kept, timing


def resolve_device(name: str = "auto") -> torch.device:
    """CUDA when present for "auto", else CPU; an explicit "cuda" without CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DivqatError(f"device {name!r} requested but CUDA is not available.", "Use --device cpu or auto.")
    return dev


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer over `model`'s OWN trainable parameters (never a copy's: the bug DivQAT's code had)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def epoch_loader(dataset: Dataset, config: TrainConfig, epoch: int) -> DataLoader:
    """A shuffled loader whose order depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=g, num_workers=0)


def _save_resume(path: Path, model, opt, sched, epoch: int, history: list, fingerprint: dict) -> None:
    state = {
        "format": RESUME_FORMAT,
        "format_version": 1,
        "fingerprint": fingerprint,
        "epochs_done": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_resume(path: Path, fingerprint: dict) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"resume file {path} is unreadable ({type(e).__name__}).", f"Delete {path} to start the run afresh."
        ) from e
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a divqat-tvm resume file.", "Delete it or choose another --out.")
    if state["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"resume file {path} belongs to a run with different settings ({state['fingerprint']}).",
            f"Rerun with the same options, or delete {path} to start afresh.",
        )
    return state


@numeric
def fit(
    model: nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    objective: Callable,
    teacher: nn.Module | None = None,
    *,
    resume_path: str | os.PathLike[str] | None = None,
    fingerprint: dict[str, Any] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train `model` in place; returns one stats dict per epoch.

    Args:
        model: the network whose own parameters are optimised (the student, for QAT/DivQAT).
        train_set: (x, y) pairs.
        config: optimisation settings.
        objective: `CrossEntropy()` or `DivQATLoss(...)`; if it `needs_teacher`, `teacher` is run under
            no_grad in eval mode on each batch.
        teacher: the frozen float teacher (DivQAT only).
        resume_path: per-epoch resume file; an existing one with a matching fingerprint is continued, and
            the file is removed when training completes.
        fingerprint: extra settings a resume file must match (e.g. method, α).
        on_epoch_start: called with the 0-based epoch before it runs (e.g. to freeze observers).
        on_epoch_end: called with the epoch and its stats after the resume file is written.
        desc: progress bar label.

    Raises:
        DivqatError: the loss became NaN/inf (diverged), or a resume file does not match.
    """
    from tqdm.auto import tqdm

    needs_teacher = bool(getattr(objective, "needs_teacher", False))
    if needs_teacher and teacher is None:
        raise ValueError("this objective needs a teacher model")
    device = resolve_device(config.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    opt = make_optimizer(model, config)
    steps = max(1, config.epochs * len(epoch_loader(train_set, config, 0)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    fp = {"train": config.fingerprint(), **(fingerprint or {})}
    history: list[dict[str, float]] = []
    start = 0
    rpath = Path(resume_path) if resume_path is not None else None
    if rpath is not None and rpath.exists():
        state = _load_resume(rpath, fp)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        start = int(state["epochs_done"])
        history = list(state["history"])
    else:
        torch.manual_seed(config.seed)

    for epoch in range(start, config.epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        tot = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
        correct = n = 0
        bar = tqdm(
            epoch_loader(train_set, config, epoch),
            desc=f"{desc} {epoch + 1}/{config.epochs}",
            disable=not config.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            t_logits = None
            if needs_teacher and teacher is not None:  # (checked above: a teacher-needing objective has one)
                with torch.no_grad():
                    t_logits = teacher(x)
            parts = objective(logits, y, t_logits)
            if not torch.isfinite(parts.loss):
                raise DivqatError(
                    f"training diverged: the loss became {float(parts.loss)} in epoch {epoch + 1}.",
                    "Lower --lr or --alpha, or keep a --kl-cap.",
                )
            opt.zero_grad(set_to_none=True)
            parts.loss.backward()
            opt.step()
            sched.step()
            b = len(y)
            n += b
            tot["loss"] += float(parts.loss.detach()) * b
            tot["ce"] += float(parts.ce.detach()) * b
            if parts.kl is not None:
                tot["kl"] += float(parts.kl) * b
            correct += int((logits.detach().argmax(1) == y).sum())
            bar.set_postfix(loss=f"{tot['loss'] / n:.4f}", acc=f"{correct / n:.3f}")
        bar.close()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = {
            "epoch": epoch + 1,
            "loss": tot["loss"] / max(n, 1),
            "ce": tot["ce"] / max(n, 1),
            "kl": tot["kl"] / max(n, 1),
            "train_acc": correct / max(n, 1),
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": secs,
            "cpu_seconds": cpu,
            "images_per_s": n / max(secs, 1e-9),
        }
        history.append(stats)
        if rpath is not None:
            _save_resume(rpath, model, opt, sched, epoch + 1, history, fp)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
    if rpath is not None:
        rpath.unlink(missing_ok=True)
    return history
