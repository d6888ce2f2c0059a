"""CLI: `divqat-tvm train`, `quantize`, `export`, `evaluate` (registered by `divqat_tvm.cli._register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional, cast

import typer

from divqat_tvm.errors import DivqatError

_DATA_DIR = typer.Option(
    "--data-dir", help="Folder holding downloaded datasets (CIFAR, SVHN); default $DIVQAT_DATA, else ./data."
)
_SEED = typer.Option(
    "--seed",
    help="Seed of the global torch RNG and the data order (same seed, bit-identical weights on CPU, whatever --threads).",
)
_DEVICE = typer.Option("--device", help="'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'.")
_BATCH = typer.Option("--batch-size", min=1, help="Images per optimisation step.")
_OPT = typer.Option("--optimizer", help="'sgd' (with momentum 0.9) or 'adam'.")
_PROGRESS = typer.Option("--progress/--no-progress", help="Show a progress bar with the running loss and accuracy.")
_THREADS = typer.Option(
    "--threads",
    min=0,
    help="CPU threads torch may use outside training (0: torch's default). Training and calibration always run on 1 thread, so the weights are bit-identical for any value.",
)


def _set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)


def _save(out: Path, model, meta: dict, timing: list) -> None:
    """The checkpoint, and its per-epoch wall/CPU time beside it (`<out>.timing.json`), so the checkpoint itself
    is bit-identical for a seed."""
    from divqat_tvm.fileio import atomic_write_json
    from divqat_tvm.train.checkpoint import save_checkpoint

    save_checkpoint(out, model.cpu(), meta)
    atomic_write_json(out.with_name(out.name + ".timing.json"), {"epochs": timing})


def _resume_path(out: Path) -> Path:
    """Where training toward `out` keeps its resumable state (`<out>.resume`)."""
    return out.with_name(out.name + ".resume")


def _splits(dataset: str, data_dir: str | None, normalization: dict | None = None):
    """A dataset's training split (augmented) and test split, normalised alike (by `normalization`, else the
    dataset's own statistics)."""
    from divqat_tvm.train.splits import load_split

    train = load_split(dataset, "train", data_dir=data_dir, augment=True, normalization=normalization)
    return train, load_split(dataset, "test", data_dir=data_dir, normalization=normalization)


def _pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def train_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to write the float teacher checkpoint (a .resume file beside it lets an interrupted run continue).",
        ),
    ] = Path("runs/teacher.pt"),
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="Dataset name: mnist5k (embedded default), digits, cifar10, cifar100, svhn, or synthetic:CxHxW:K; NAME@victim trains on the victim's half of the training split only (the other half, NAME@attacker, is the in-distribution attacker's pool).",
        ),
    ] = "mnist5k",
    arch: Annotated[str, typer.Option("--arch", help="Model: tinycnn, resnet8, vgg or dscnn.")] = "tinycnn",
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="Passes over the training split.")] = 15,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine schedule to 0).")] = 0.05,
    optimizer: Annotated[str, _OPT] = "sgd",
    batch_size: Annotated[int, _BATCH] = 64,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="L2 weight decay.")] = 5e-4,
    seed: Annotated[int, _SEED] = 0,
    device: Annotated[str, _DEVICE] = "auto",
    data_dir: Annotated[Optional[str], _DATA_DIR] = None,
    progress: Annotated[bool, _PROGRESS] = True,
    threads: Annotated[int, _THREADS] = 0,
) -> None:
    """Train a float teacher on a dataset's training split and save it with its test accuracy."""
    import torch

    from divqat_tvm.models import build_model, count_macs_params
    from divqat_tvm.train.loop import TrainConfig, split_timing
    from divqat_tvm.train.metrics import accuracy, predict_logits
    from divqat_tvm.train.recipes import train_teacher

    _set_threads(threads)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
        progress=progress,
    )
    train, test = _splits(dataset, data_dir)
    info = train.info
    torch.manual_seed(seed)
    model = build_model(arch, info.input_shape[0], info.num_classes, info.input_shape[1])
    history, timing = split_timing(train_teacher(model, train, cfg, resume_path=_resume_path(out)))
    x, y = test.tensors()
    acc = accuracy(predict_logits(model, x), y)
    macs, params = count_macs_params(model, info.input_shape)
    meta = {
        "arch": arch,
        "dataset": dataset if "@" in dataset else info.name,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "normalization": {"mean": list(train.mean), "std": list(train.std)},
        "method": "float",
        "metrics": {"test_acc": acc, "epochs": epochs, "macs": macs, "params": params, "history": history},
        "train_config": cfg.fingerprint(),
    }
    _save(out, model, meta, timing)
    _console().print(
        f"teacher {arch} on {info.name}: test accuracy {_pct(acc)} ({len(y)} images), {params:,} params, {macs:,} MACs → {out}"
    )


def quantize_command(
    teacher: Annotated[Path, typer.Argument(help="Float teacher checkpoint from `divqat-tvm train`.")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="ptq (calibrate only), qat (fine-tune with cross-entropy) or divqat (CE − α·KL against the frozen teacher).",
        ),
    ] = "divqat",
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0, help="DivQAT weight α of the −KL term; 0 is exactly QAT.")
    ] = 1.0,
    kl_direction: Annotated[
        str,
        typer.Option(
            "--kl-direction", help="teacher_student: KL(p_teacher ‖ p_student) (default); student_teacher: the reverse."
        ),
    ] = "teacher_student",
    kl_cap: Annotated[
        float,
        typer.Option(
            "--kl-cap",
            min=0.0,
            help="Per-sample cap κ: the loss uses min(KL, κ), so it is bounded below by −α·κ. 0 disables the cap (runs away for α ≥ 1).",
        ),
    ] = 0.3,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Softmax temperature T of both models inside the KL.")
    ] = 1.0,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="DivQAT loss: paper (CE − α·capped KL) or nontop (the KL over the classes other than the teacher's top-1, plus a hinge keeping the teacher's top-1 ahead by --margin logits).",
        ),
    ] = "paper",
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="nontop: logit margin the teacher's top-1 class must keep.")
    ] = 1.0,
    margin_weight: Annotated[
        float, typer.Option("--margin-weight", min=0.0, help="nontop: weight λ of the margin hinge.")
    ] = 1.0,
    epochs: Annotated[
        int, typer.Option("--epochs", min=0, help="Fine-tuning epochs for QAT/DivQAT (ignored by PTQ).")
    ] = 4,
    lr: Annotated[
        float,
        typer.Option("--lr", help="Peak fine-tuning learning rate (cosine to 0). BN is folded, so keep it small."),
    ] = 0.003,
    optimizer: Annotated[str, _OPT] = "sgd",
    batch_size: Annotated[int, _BATCH] = 64,
    freeze_observers_after: Annotated[
        int, typer.Option("--freeze-observers-after", min=0, help="Epochs after which activation ranges stop moving.")
    ] = 2,
    calibration_batches: Annotated[
        int, typer.Option("--calibration-batches", min=1, help="Training batches used to calibrate activation ranges.")
    ] = 16,
    observer_momentum: Annotated[
        float, typer.Option("--observer-momentum", help="EMA weight of each batch's range during QAT.")
    ] = 0.01,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Student checkpoint to write (default: beside the teacher, named after the method)."
        ),
    ] = None,
    seed: Annotated[int, _SEED] = 0,
    device: Annotated[str, _DEVICE] = "auto",
    data_dir: Annotated[Optional[str], _DATA_DIR] = None,
    progress: Annotated[bool, _PROGRESS] = True,
    threads: Annotated[int, _THREADS] = 0,
) -> None:
    """Make the int8 student of a teacher by PTQ, QAT or DivQAT; report its accuracy and KL(teacher ‖ student)."""

    from divqat_tvm.quant.config import DivQATConfig, QuantConfig
    from divqat_tvm.train.checkpoint import load_checkpoint
    from divqat_tvm.train.loop import TrainConfig, split_timing
    from divqat_tvm.train.metrics import accuracy, agreement, mean_kl, predict_logits
    from divqat_tvm.train.recipes import make_student

    quant = QuantConfig(
        method=method,
        observer_momentum=observer_momentum,
        freeze_observers_after=freeze_observers_after,
        calibration_batches=calibration_batches,
    )
    div = (
        DivQATConfig(
            alpha=alpha,
            kl_direction=kl_direction,
            kl_cap=kl_cap or None,
            temperature=temperature,
            objective=objective,
            margin=margin,
            margin_weight=margin_weight,
        )
        if method == "divqat"
        else None
    )
    _set_threads(threads)
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed, device=device, progress=progress
    )
    model, meta = load_checkpoint(teacher, kind="float")
    train, test = _splits(meta["dataset"], data_dir, meta["normalization"])
    out = out or teacher.with_name(f"{method}.pt")
    student, history = make_student(model, train, quant, cfg, div, resume_path=_resume_path(out))
    history, timing = split_timing(history)
    x, y = test.tensors()
    lt, ls = predict_logits(model, x), predict_logits(student, x)
    metrics: dict[str, Any] = {
        "test_acc": accuracy(ls, y),
        "teacher_test_acc": accuracy(lt, y),
        "kl_teacher_student": mean_kl(lt, ls),
        "agreement_with_teacher": agreement(lt, ls),
        "history": history,
    }
    smeta = {
        **{k: meta[k] for k in ("arch", "dataset", "input_shape", "num_classes", "normalization")},
        "method": method,
        "alpha": alpha if div else None,
        "kl_direction": kl_direction if div else None,
        "kl_cap": div.kl_cap if div else None,
        "temperature": temperature if div else None,
        "objective": div.objective if div else None,
        **({"margin": margin, "margin_weight": margin_weight} if div and div.objective == "nontop" else {}),
        "teacher": str(teacher),
        "metrics": metrics,
        "train_config": cfg.fingerprint(),
    }
    _save(out, student, smeta, timing)
    _console().print(
        f"{method}{'' if not div or div.objective == 'paper' else '-' + div.objective} student: test accuracy {_pct(metrics['test_acc'])} (teacher {_pct(metrics['teacher_test_acc'])}), "
        f"mean KL(teacher ‖ student) {metrics['kl_teacher_student']:.4f} nats, top-1 agreement {_pct(metrics['agreement_with_teacher'])} → {out}"
    )


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="int8 student checkpoint from `divqat-tvm quantize`.")],
    out: Annotated[
        Path, typer.Option("--out", help="ONNX QDQ file to write (opset 13, format in docs/contracts.md).")
    ] = Path("model.onnx"),
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Compare onnxruntime with the torch student on the test split.")
    ] = True,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Verify on at most this many test images.")
    ] = None,
    data_dir: Annotated[Optional[str], _DATA_DIR] = None,
) -> None:
    """Export an int8 student to ONNX QDQ, check it with onnx.checker and (by default) onnxruntime."""
    from divqat_tvm.quant.export import compare_with_ort, export_onnx
    from divqat_tvm.quant.prepare import QuantizedModel
    from divqat_tvm.train.checkpoint import load_checkpoint
    from divqat_tvm.train.evaluate import load_test_split

    model, meta = load_checkpoint(checkpoint, kind="quantized")
    student = cast(QuantizedModel, model)  # kind="quantized" rebuilds a QuantizedModel
    path = export_onnx(student, out, tuple(meta["input_shape"]), meta={k: v for k, v in meta.items() if k != "metrics"})
    con = _console()
    con.print(f"wrote {path} (onnx.checker passed)")
    if verify:
        import torch

        x, _y, name = load_test_split(meta, None, data_dir, limit)
        r = compare_with_ort(student, path, torch.from_numpy(x))
        con.print(
            f"onnxruntime vs torch fake-quant on {r['n']} {name} test images: top-1 agreement {_pct(r['agreement'])}, "
            f"max |logit difference| {r['max_abs_logit_diff']:.6g}"
        )
        if r["agreement"] < 0.995:
            raise DivqatError(
                f"onnxruntime agrees with the torch student on only {_pct(r['agreement'])} of inputs (< 99.5 %).",
                "Report this as an export bug.",
            )


def evaluate_command(
    a: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or ONNX file (.onnx).")],
    b: Annotated[
        Optional[Path], typer.Argument(help="Optional second model: adds top-1 agreement and mean KL(A ‖ B).")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Test split to use (default: the dataset A was trained on).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use at most this many test images.")] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    data_dir: Annotated[Optional[str], _DATA_DIR] = None,
) -> None:
    """Accuracy of a model on a test split; with two models, their top-1 agreement and mean KL(A ‖ B)."""
    from divqat_tvm.fileio import atomic_write_json
    from divqat_tvm.train.evaluate import evaluate_files

    r = evaluate_files(a, b, dataset, data_dir, limit)
    con = _console()
    con.print(f"{a}: accuracy {_pct(r['a']['accuracy'])} on {r['n']} {r['dataset']} test images")
    if b is not None:
        con.print(f"{b}: accuracy {_pct(r['b']['accuracy'])}")
        con.print(f"top-1 agreement {_pct(r['agreement'])}, mean KL(A ‖ B) {r['mean_kl_a_b']:.4f} nats")
    if json_out is not None:
        atomic_write_json(json_out, r)


def register(app: typer.Typer) -> None:
    """Add the training-stage commands to the CLI."""
    app.command("train")(train_command)
    app.command("quantize")(quantize_command)
    app.command("export")(export_command)
    app.command("evaluate")(evaluate_command)
