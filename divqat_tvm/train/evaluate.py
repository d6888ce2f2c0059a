"""Evaluate checkpoints and ONNX files alike: accuracy on a test split, and agreement / KL between two models."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from divqat_tvm.errors import CheckpointError, DivqatError
from divqat_tvm.train.metrics import accuracy, agreement, mean_kl, predict_logits

Predictor = Callable[[np.ndarray], np.ndarray]


def onnx_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint metadata `divqat-tvm export` stored in the ONNX file ({} if absent)."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable ONNX file ({type(e).__name__}).", "Export it again with `divqat-tvm export`."
        ) from None
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props["divqat_meta"]) if "divqat_meta" in props else {}


def load_predictor(path: str | os.PathLike[str]) -> tuple[Predictor, dict[str, Any]]:
    """A function float32 [N,C,H,W] → logits [N,K] for a checkpoint (torch) or a .onnx file (onnxruntime)."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise CheckpointError(
                f"ONNX file {p} does not exist.", "Check the path, or create it with `divqat-tvm export`."
            )
        from divqat_tvm.quant.export import ort_logits, ort_session

        meta = onnx_meta(p)
        sess = ort_session(p)
        return (lambda x: ort_logits(sess, np.asarray(x, np.float32))), meta
    from divqat_tvm.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(p)
    return (lambda x: predict_logits(model, torch.as_tensor(x)).numpy()), meta


def load_test_split(
    meta: dict[str, Any], dataset: str | None, data_dir: str | None, limit: int | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, name) of a dataset's test split, normalised as the model expects (its checkpoint's normalisation)."""
    from divqat_tvm.train.splits import load_split as load_dataset

    name = dataset or meta.get("dataset")
    if not name:
        raise DivqatError("the model file does not say which dataset it was trained on.", "Pass --dataset.")
    ds = load_dataset(name, "test", data_dir=data_dir, normalization=meta.get("normalization"))
    x, y = ds.tensors()
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x.numpy(), y.numpy(), name


def evaluate_files(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Accuracy of `a` (and `b`) on the test split; with `b`, top-1 agreement and mean KL(a ‖ b)."""
    fa, ma = load_predictor(a)
    x, y, name = load_test_split(ma, dataset, data_dir, limit)
    la = fa(x)
    out: dict[str, Any] = {"dataset": name, "n": int(len(y)), "a": {"path": os.fspath(a), "accuracy": accuracy(la, y)}}
    if b is not None:
        fb, mb = load_predictor(b)
        if ma.get("normalization") and mb.get("normalization") and ma["normalization"] != mb["normalization"]:
            raise DivqatError(
                f"{a} and {b} expect different input normalisations.", "Compare models trained on the same data."
            )
        lb = fb(x)
        if lb.shape != la.shape:
            raise DivqatError(
                f"{a} gives {la.shape[1]} classes but {b} gives {lb.shape[1]}.", "Compare models of the same task."
            )
        out["b"] = {"path": os.fspath(b), "accuracy": accuracy(lb, y)}
        out["agreement"] = agreement(la, lb)
        out["mean_kl_a_b"] = mean_kl(la, lb)
    return out
