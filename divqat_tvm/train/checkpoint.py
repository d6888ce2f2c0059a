"""Checkpoints: a state dict plus the metadata needed to rebuild the model (float or int8 student) from it.

`save_checkpoint(path, model, meta)` writes atomically; `load_checkpoint(path) -> (model, meta)` rebuilds the
architecture from the registry (`meta["arch"]`, input shape, class count), re-applies `quantize_model` with the
stored `QuantConfig` for a quantized student, loads the state dict (weights, folded biases, observer ranges and
their frozen flags) and returns the model in eval mode. The file holds only tensors and plain Python values, so
it loads with `torch.load(weights_only=True)`. Format: docs/contracts.md.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from divqat_tvm.errors import CheckpointError, DivqatError
from divqat_tvm.fileio import atomic_write_bytes

FORMAT = "divqat-tvm-checkpoint"
FORMAT_VERSION = 1
KINDS = ("float", "quantized")
REQUIRED_META = ("arch", "dataset", "input_shape", "num_classes", "normalization", "method")
_MAKE_FIX = "Create it with `divqat-tvm train` (float teacher) or `divqat-tvm quantize` (int8 student)."


def git_rev() -> str | None:
    """The repository's HEAD commit (with "-dirty" if the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _plain(v: Any) -> Any:
    """Metadata as plain Python (tuples → lists, numpy/torch scalars → numbers) for weights_only loading."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        return v.item()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write `model`'s state dict and `meta` to `path` atomically.

    `kind`, `format_version`, `git_rev` and (for a quantized student) `quant_config` are filled in here;
    `method` defaults to "float" for a float model, `alpha`/`kl_direction`/`kl_cap` to None, `metrics` to {}.

    Raises:
        DivqatError: `meta` lacks a required key.
    """
    from divqat_tvm.quant.prepare import QuantizedModel

    missing = [
        k for k in REQUIRED_META if k not in meta and not (k == "method" and not isinstance(model, QuantizedModel))
    ]
    if missing:
        raise DivqatError(
            f"checkpoint metadata lacks {', '.join(missing)}.", "Pass them in meta (see docs/contracts.md)."
        )
    m = dict(meta)
    quantized = isinstance(model, QuantizedModel)
    m["kind"] = "quantized" if quantized else "float"
    m.setdefault("method", "float")
    for k in ("alpha", "kl_direction", "kl_cap"):
        m.setdefault(k, None)
    m.setdefault("metrics", {})
    m["format_version"] = FORMAT_VERSION
    m.setdefault("git_rev", git_rev())
    if isinstance(model, QuantizedModel):
        m["quant_config"] = model.config.to_dict()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "meta": _plain(m), "state_dict": state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw payload {"format", "meta", "state_dict"} of a checkpoint, validated.

    Raises:
        CheckpointError: missing, unreadable, of another kind (e.g. a resume file), or a newer format.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist.", _MAKE_FIX)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{p} is not a readable divqat-tvm checkpoint (corrupt or not a torch file: {type(e).__name__}).",
            f"Re-create it; {_MAKE_FIX[0].lower()}{_MAKE_FIX[1:]}",
        ) from None
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt == "divqat-tvm-resume":
        raise CheckpointError(
            f"{p} is the resume file of an interrupted training run, not a checkpoint.",
            "Rerun the same command to finish the run; it continues from this file and writes the checkpoint.",
        )
    if fmt != FORMAT or not isinstance(payload.get("meta"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"{p} is a torch file but not a divqat-tvm checkpoint.", _MAKE_FIX)
    meta = payload["meta"]
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {meta.get('format_version')}, newer than this divqat-tvm reads ({FORMAT_VERSION}).",
            "Update divqat-tvm.",
        )
    missing = [k for k in (*REQUIRED_META, "kind") if k not in meta]
    if missing or meta["kind"] not in KINDS:
        raise CheckpointError(
            f"{p} has incomplete metadata (missing {', '.join(missing) or 'a valid kind'}).", _MAKE_FIX
        )
    return payload


def build_from_meta(meta: dict[str, Any]) -> nn.Module:
    """An untrained model with the checkpoint's structure (a float net, or its int8 student)."""
    from divqat_tvm.models import build_model
    from divqat_tvm.quant.config import QuantConfig
    from divqat_tvm.quant.prepare import quantize_model

    c, h, _w = (int(v) for v in meta["input_shape"])
    model = build_model(meta["arch"], c, int(meta["num_classes"]), h)
    if meta["kind"] == "quantized":
        model = quantize_model(model, QuantConfig.from_dict(meta["quant_config"]))
    return model


def load_checkpoint(
    path: str | os.PathLike[str], kind: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored at `path`, in eval mode, and return it with its metadata.

    Args:
        path: a file written by `save_checkpoint`.
        kind: if given ("float" or "quantized"), refuse a checkpoint of the other kind.
        map_location: device for the tensors.

    Raises:
        CheckpointError: missing, corrupt, wrong kind, or weights that do not fit the architecture.
    """
    p = Path(path)
    payload = read_checkpoint(p)
    meta = payload["meta"]
    if kind is not None and meta["kind"] != kind:
        want, cmd = (
            ("a float teacher", "divqat-tvm train") if kind == "float" else ("an int8 student", "divqat-tvm quantize")
        )
        raise CheckpointError(
            f"{p} holds a {meta['kind']} model, but this step needs {want}.", f"Pass a checkpoint written by `{cmd}`."
        )
    try:
        model = build_from_meta(meta)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError, DivqatError) as e:
        msg = e.problem if isinstance(e, DivqatError) else str(e).splitlines()[0]
        raise CheckpointError(f"{p} does not fit its architecture {meta.get('arch')!r}: {msg}", _MAKE_FIX) from None
    model.to(map_location).eval()
    return model, meta
