#!/usr/bin/env python
"""Foundation figures on the embedded default: teacher, PTQ, QAT and DivQAT students, accuracy and KL.

Trains a float teacher (mnist5k, tinycnn by default), makes its PTQ, QAT and DivQAT students (one per α), and
for each reports test accuracy, mean KL(teacher ‖ student) in nats, top-1 agreement with the teacher, and the
onnxruntime agreement of its ONNX QDQ export. Prints a table and writes JSON (the source of truth). Several
seeds give mean ± std. Checkpoints land beside the JSON; a rerun with the same settings reuses them, and an
interrupted training continues from its per-epoch resume file.

    .venv/bin/python scripts/foundation_report.py                      # minutes on 2 cores
    .venv/bin/python scripts/foundation_report.py --alphas 0.5 1 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from divqat_tvm.data import load_dataset
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.models import build_model
from divqat_tvm.quant.config import DivQATConfig, QuantConfig
from divqat_tvm.quant.export import compare_with_ort, to_onnx
from divqat_tvm.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from divqat_tvm.train.loop import TrainConfig
from divqat_tvm.train.metrics import accuracy, agreement, mean_kl, predict_logits
from divqat_tvm.train.recipes import make_student, train_teacher


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="mnist5k", help="dataset (default: the embedded mnist5k)")
    p.add_argument("--arch", default="tinycnn", help="model architecture (default: tinycnn)")
    p.add_argument("--teacher-epochs", type=int, default=15, help="teacher training epochs")
    p.add_argument("--teacher-lr", type=float, default=0.05, help="teacher peak learning rate (SGD, cosine)")
    p.add_argument("--student-epochs", type=int, default=4, help="QAT / DivQAT fine-tuning epochs")
    p.add_argument("--student-lr", type=float, default=0.003, help="QAT / DivQAT peak learning rate (SGD, cosine)")
    p.add_argument("--alphas", type=float, nargs="+", default=[1.0], help="DivQAT α values (default: 1.0)")
    p.add_argument("--kl-cap", type=float, default=0.3, help="per-sample KL cap κ (0: none)")
    p.add_argument("--kl-direction", default="teacher_student", choices=["teacher_student", "student_teacher"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (teacher and students)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--out", type=Path, default=Path("runs/foundation/report.json"), help="JSON report path")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    return p.parse_args(argv)


def _cached(path: Path, settings: dict[str, Any]):
    """A checkpoint at `path` trained with exactly `settings`, or None."""
    if not path.exists():
        return None
    if read_checkpoint(path)["meta"].get("settings") != json.loads(json.dumps(settings)):
        return None
    return load_checkpoint(path)


def _base_meta(info, train) -> dict[str, Any]:
    return {
        "dataset": info.name,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "normalization": {"mean": list(train.mean), "std": list(train.std)},
    }


def run_seed(a: argparse.Namespace, seed: int, workdir: Path) -> list[dict[str, Any]]:
    """All rows (teacher, ptq, qat, divqat α…) for one seed."""
    train = load_dataset(a.dataset, "train", augment=True)
    test = load_dataset(a.dataset, "test")
    info = train.info
    x, y = test.tensors()
    base = {**_base_meta(info, train), "arch": a.arch}
    rows: list[dict[str, Any]] = []

    t_settings = {"seed": seed, "epochs": a.teacher_epochs, "lr": a.teacher_lr, "arch": a.arch, "dataset": info.name}
    t_path = workdir / f"seed{seed}" / "teacher.pt"
    cached = _cached(t_path, t_settings)
    t0 = time.perf_counter()
    if cached is None:
        torch.manual_seed(seed)
        teacher = build_model(a.arch, info.input_shape[0], info.num_classes, info.input_shape[1])
        train_teacher(
            teacher,
            train,
            TrainConfig(epochs=a.teacher_epochs, lr=a.teacher_lr, seed=seed, progress=a.progress),
            resume_path=str(t_path) + ".resume",
        )
        save_checkpoint(t_path, teacher, {**base, "method": "float", "settings": t_settings})
    else:
        teacher = cached[0]
    t_secs = time.perf_counter() - t0
    lt = predict_logits(teacher, x)
    rows.append(
        {
            "seed": seed,
            "model": "teacher (float)",
            "method": "float",
            "alpha": None,
            "accuracy": accuracy(lt, y),
            "kl_teacher_student": 0.0,
            "agreement_with_teacher": 1.0,
            "ort_agreement": None,
            "seconds": t_secs,
        }
    )

    variants: list[tuple[str, str, DivQATConfig | None]] = [("ptq", "PTQ", None), ("qat", "QAT", None)]
    cap = a.kl_cap or None
    cap_label = f"κ={a.kl_cap:g}" if cap else "no cap"
    variants += [
        ("divqat", f"DivQAT α={al:g} {cap_label}", DivQATConfig(alpha=al, kl_cap=cap, kl_direction=a.kl_direction))
        for al in a.alphas
    ]
    for method, label, div in variants:
        s_settings = {
            **t_settings,
            "method": method,
            "s_epochs": a.student_epochs,
            "s_lr": a.student_lr,
            "divqat": div.to_dict() if div else None,
        }
        tag = method if div is None else f"divqat_a{div.alpha:g}_k{a.kl_cap:g}_{a.kl_direction}"
        s_path = workdir / f"seed{seed}" / f"{tag}.pt"
        cached = _cached(s_path, s_settings)
        t0 = time.perf_counter()
        if cached is None:
            cfg = TrainConfig(epochs=a.student_epochs, lr=a.student_lr, seed=seed, progress=a.progress)
            student, _hist = make_student(
                teacher, train, QuantConfig(method=method), cfg, div, resume_path=str(s_path) + ".resume"
            )
            meta = {
                **base,
                "method": method,
                "alpha": div.alpha if div else None,
                "kl_cap": div.kl_cap if div else None,
                "kl_direction": div.kl_direction if div else None,
                "settings": s_settings,
            }
            save_checkpoint(s_path, student, meta)
        else:
            student = cached[0]
        secs = time.perf_counter() - t0
        ls = predict_logits(student, x)
        ort = compare_with_ort(student, to_onnx(student, tuple(info.input_shape)), x)
        rows.append(
            {
                "seed": seed,
                "model": label,
                "method": method,
                "alpha": div.alpha if div else None,
                "accuracy": accuracy(ls, y),
                "kl_teacher_student": mean_kl(lt, ls),
                "agreement_with_teacher": agreement(lt, ls),
                "ort_agreement": ort["agreement"],
                "ort_max_abs_logit_diff": ort["max_abs_logit_diff"],
                "seconds": secs,
            }
        )
    return rows


def _mean_sd(rs: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    """Mean and sample std of `key` over the rows that have it (std 0 for one row); (None, None) for none."""
    v = [r[key] for r in rs if r.get(key) is not None]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds for each model."""
    out = []
    for label in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == label]
        acc, acc_sd = _mean_sd(rs, "accuracy")
        kl, kl_sd = _mean_sd(rs, "kl_teacher_student")
        agr, _ = _mean_sd(rs, "agreement_with_teacher")
        ort, _ = _mean_sd(rs, "ort_agreement")
        out.append(
            {
                "model": label,
                "seeds": len(rs),
                "accuracy": acc,
                "accuracy_std": acc_sd,
                "kl_teacher_student": kl,
                "kl_std": kl_sd,
                "agreement_with_teacher": agr,
                "ort_agreement_min": min(
                    (r["ort_agreement"] for r in rs if r["ort_agreement"] is not None), default=None
                ),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    a = _args(argv)
    torch.set_num_threads(max(1, a.threads))
    workdir = a.out.parent
    t0 = time.perf_counter()
    rows = [r for seed in a.seeds for r in run_seed(a, seed, workdir)]
    summary = summarize(rows)
    qat = next(s for s in summary if s["model"] == "QAT")
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "rows": rows,
        "summary": summary,
        "seconds_total": time.perf_counter() - t0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    atomic_write_json(a.out, report)
    table = Table(
        title=f"{a.arch} on {a.dataset}: int8 students vs the float teacher ({len(a.seeds)} seed(s), test split)"
    )
    for col in (
        "model",
        "accuracy",
        "Δacc vs QAT",
        "mean KL(teacher‖student)",
        "agreement w/ teacher",
        "ORT agreement",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    sd = len(a.seeds) > 1
    for s in summary:
        acc = f"{100 * s['accuracy']:.2f} %" + (f" ± {100 * s['accuracy_std']:.2f}" if sd else "")
        kl = f"{s['kl_teacher_student']:.4f}" + (f" ± {s['kl_std']:.4f}" if sd else "")
        dacc = "" if s["model"].startswith("teacher") else f"{100 * (s['accuracy'] - qat['accuracy']):+.2f}"
        ort = "" if s["ort_agreement_min"] is None else f"{100 * s['ort_agreement_min']:.2f} %"
        table.add_row(s["model"], acc, dacc, kl, f"{100 * s['agreement_with_teacher']:.2f} %", ort)
    con = Console(soft_wrap=True, width=160)
    con.print(table)
    n_test = len(load_dataset(a.dataset, "test"))
    con.print(
        f"KL in nats over {n_test} test images; ORT agreement = onnxruntime QDQ export vs torch fake-quant (worst seed). JSON: {a.out} ({report['seconds_total']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
