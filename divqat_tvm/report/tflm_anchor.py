"""TFLite Micro reference figures ("the anchor") for one MLPerf Tiny model, and our figures beside them.

Two sources, per model (never another model's figures):
- a JSON written by scripts/tflm_reference.py (measured here: instructions per inference per core, per operator,
  arena, code), matched to the model by its sha256;
- the tables of ../shared/models/README.md: ResNet-8's per-core table (exact plugin counts, CMSIS-NN and reference
  kernels), its Cortex-M7 per-operator list and memory, and the per-model table of the other MLPerf Tiny models
  (SysTick counts, CMSIS-NN only, with arena bytes).
A model in neither (or a README without its row) has no reference: its ratios are None and print as "-".
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

#: model file -> short key; the README's per-model table names rows by their first word ("ResNet-8", "KWS", ...)
MODEL_KEYS = {
    "mlperf-tiny-resnet8-int8.tflite": "resnet8",
    "kws_ref_model.tflite": "kws",
    "vww_96_int8.tflite": "vww",
    "ad01_int8.tflite": "ad01",
}
ROW_KEYS = {"resnet8": "resnet8", "kws": "kws", "vww": "vww", "ad01": "ad01"}
#: README column / JSON core name -> board
CORE_BOARD = {"Cortex-M7": "mps2-an500", "Cortex-M4": "mps2-an386", "Cortex-M55": "mps3-an547"}
BOARD_CORE = {b: c for c, b in CORE_BOARD.items()}
JSON_CORE = {"cortex-m7": "Cortex-M7", "cortex-m4": "Cortex-M4", "cortex-m55": "Cortex-M55"}


def _int(s: str) -> int:
    return int(s.replace(",", "").strip())


def _row_key(cell: str) -> str | None:
    """'ResNet-8' -> resnet8, 'KWS (DS-CNN)' -> kws, 'VWW (MobileNetV1 0.25)' -> vww, 'AD01 (...)' -> ad01."""
    word = re.sub(r"[^a-z0-9]", "", cell.strip().split()[0].lower()) if cell.strip() else ""
    return ROW_KEYS.get(word)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in text: a list of rows (header first, separator dropped), each a list of cells."""
    out, cur = [], []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            cells = _cells(line)
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c):
                continue
            cur.append(cells)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _core_of_header(h: str) -> str | None:
    m = re.match(r"(Cortex-M\d+)", h.strip())
    return m.group(1) if m else None


def parse_models_readme(text: str) -> dict[str, dict[str, Any]]:
    """Per-model TFLM figures from the models README: {key: {"instructions": {core: {kernels: {...}}}, ...}}.

    Each figure is {"value": int, "method": "plugin" | "systick"}; "instructions" holds per core the kernels
    "cmsis_nn" (SysTick, the per-model table, preferred as it is how our firmware counts) and, for ResNet-8,
    "cmsis_nn_plugin" / "reference_plugin" (exact TCG-plugin counts). Also "sha256_prefix", "macs",
    "arena_bytes", "per_operator" ({core: [(label, instructions), ...]}) and "memory" where the README has them.
    """
    models: dict[str, dict[str, Any]] = {}

    def entry(key: str) -> dict[str, Any]:
        return models.setdefault(key, {"instructions": {}, "per_operator": {}, "memory": {}})

    # ResNet-8's own section: its sha256 and its per-core table (plugin counts)
    sec = re.search(r"^## `mlperf-tiny-resnet8-int8\.tflite`(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    if sec:
        body = sec.group(1)
        e = entry("resnet8")
        m = re.search(r"sha256 `([0-9a-f]{16,64})`", body)
        if m:
            e["sha256_prefix"] = m.group(1)
        m = re.search(r"([\d,]+) MACs", body)
        if m:
            e["macs"] = _int(m.group(1))
        for tab in _tables(body):
            head = [h.lower() for h in tab[0]]
            if len(head) >= 3 and head[0].startswith("core") and "cmsis-nn" in head[1] and "reference" in head[2]:
                for row in tab[1:]:
                    core = _core_of_header(row[0])
                    cmsis, ref = (re.match(r"\s*([\d,]+)", c) for c in row[1:3])
                    if core and cmsis and ref:
                        d = e["instructions"].setdefault(core, {})
                        d["cmsis_nn_plugin"] = {"value": _int(cmsis.group(1)), "method": "plugin"}
                        d["reference_plugin"] = {"value": _int(ref.group(1)), "method": "plugin"}
        m = re.search(r"(Cortex-M\d+) CMSIS-NN, per operator:(.*?)(?:\n\s*\n|$)", body, re.DOTALL)
        if m:
            ops: list[tuple[str, int]] = []
            for item in " ".join(m.group(2).split()).strip(" .").split(" · "):
                hit = re.match(r"(.*?)\s+([\d,]+)(\s*\(twice\))?$", item.strip())
                if hit:
                    ops += [(hit.group(1), _int(hit.group(2)))] * (2 if hit.group(3) else 1)
            e["per_operator"][m.group(1)] = ops

        def mem(pattern: str) -> int | None:
            hit = re.search(pattern, body)
            return _int(hit.group(1)) if hit else None

        e["memory"] = {
            k: v
            for k, v in {
                "code_bytes": mem(r"code \(\.text\) ([\d,]+) B"),
                "model_bytes": mem(r"model ([\d,]+) B"),
                "arena_bytes": mem(r"arena used ([\d,]+) B"),
                "stack_peak_bytes": mem(r"stack peak ([\d,]+) B"),
                "other_rodata_bytes": mem(r"other read-only data ([\d,]+) B"),
            }.items()
            if v is not None
        }

    for tab in _tables(text):
        head = tab[0]
        low = [h.lower() for h in head]
        # the file table of the other models: file -> sha256 prefix
        if low and low[0] == "file" and any("sha256" in h for h in low):
            si = next(i for i, h in enumerate(low) if "sha256" in h)
            for row in tab[1:]:
                key = MODEL_KEYS.get(row[0].strip("` "))
                if key and si < len(row):
                    entry(key)["sha256_prefix"] = row[si].strip("` ")
        # the per-model table: model | MACs | Cortex-M7 (...) | per MAC | Cortex-M4 (...) | Cortex-M55 (...) | arena used
        if low and low[0] == "model" and any(_core_of_header(h) for h in head):
            for row in tab[1:]:
                key = _row_key(row[0])
                if key is None:
                    continue
                e = entry(key)
                for i, h in enumerate(head):
                    if i >= len(row):
                        break
                    core = _core_of_header(h)
                    num = re.fullmatch(r"([\d,]+)", row[i].strip())
                    if core and num:
                        e["instructions"].setdefault(core, {})["cmsis_nn"] = {
                            "value": _int(num.group(1)),
                            "method": "systick",
                        }
                    elif low[i] == "macs" and num:
                        e.setdefault("macs", _int(num.group(1)))
                    elif low[i].startswith("arena") and num:
                        e["arena_bytes"] = _int(num.group(1))
    return models


def model_key(model: Path, readme_models: dict[str, dict[str, Any]] | None = None) -> str | None:
    """The README key of a model file: by file name, else by its sha256 against the README's hashes; None if unknown."""
    key = MODEL_KEYS.get(Path(model).name)
    if key:
        return key
    if readme_models and Path(model).is_file():
        digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
        for k, e in readme_models.items():
            p = e.get("sha256_prefix")
            if p and digest.startswith(p):
                return k
    return None


def readme_reference(readme: Path, model: Path) -> dict[str, Any] | None:
    """This model's figures from the README, in the form of `reference_from_json`, or None when it has none."""
    models = parse_models_readme(Path(readme).read_text())
    key = model_key(model, models)
    if key is None or key not in models:
        return None
    e = models[key]
    cores: dict[str, dict[str, Any]] = {}
    for core, kinds in e["instructions"].items():
        c = cores.setdefault(core, {})
        cm = kinds.get("cmsis_nn") or kinds.get("cmsis_nn_plugin")
        if cm:
            c["cmsis_nn"] = cm["value"]
            c["cmsis_nn_method"] = cm["method"]
        if "cmsis_nn_plugin" in kinds:
            c["cmsis_nn_plugin"] = kinds["cmsis_nn_plugin"]["value"]
        if "reference_plugin" in kinds:
            c["reference"] = kinds["reference_plugin"]["value"]
            c["reference_method"] = "plugin"
    per_op = {
        core: [{"index": i, "label": label, "instructions": v} for i, (label, v) in enumerate(ops)]
        for core, ops in e["per_operator"].items()
    }
    memory = dict(e.get("memory") or {})
    if "arena_bytes" not in memory and e.get("arena_bytes"):
        memory["arena_bytes"] = e["arena_bytes"]
    if not cores:
        return None
    return {
        "source": f"{readme} ({key})",
        "model_key": key,
        "macs": e.get("macs"),
        "cores": cores,
        "per_operator": per_op,
        "memory": {"Cortex-M7": memory} if memory else {},
    }


class AnchorError(ValueError):
    """A tflm_reference JSON that does not describe the model being benchmarked (or is not one)."""


def reference_from_json(path: Path, model: Path) -> dict[str, Any]:
    """Figures from a scripts/tflm_reference.py JSON (one file, or several merged by the caller) for this model."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise AnchorError(f"cannot read {path}: {e}") from e
    if not isinstance(doc, dict) or "results" not in doc:
        raise AnchorError(f"{path} is not a tflm_reference JSON (no 'results')")
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    if doc.get("model_sha256") != digest:
        raise AnchorError(
            f"{path} was measured on {doc.get('model_name', '?')} (sha256 {str(doc.get('model_sha256'))[:16]}), "
            f"not on {Path(model).name} (sha256 {digest[:16]})"
        )
    cores: dict[str, dict[str, Any]] = {}
    per_op: dict[str, list[dict[str, Any]]] = {}
    memory: dict[str, dict[str, Any]] = {}
    ops_meta = doc.get("operators") or []
    for r in doc["results"]:
        core = JSON_CORE.get(r.get("core"), r.get("core"))
        c = cores.setdefault(core, {})
        kind = r.get("kernels")
        c[kind] = r["instructions"]
        c[f"{kind}_method"] = "systick"
        if kind == "cmsis_nn":
            rows = []
            for op in r.get("per_operator") or []:
                i = op["index"]
                meta = ops_meta[i] if i < len(ops_meta) else {}
                shape = "x".join(str(d) for d in (op.get("output_shape") or meta.get("output_shape") or [])[1:])
                rows.append({"index": i, "label": f"{op['op']} {shape}".strip(), "instructions": op["instructions"]})
            per_op[core] = rows
            memory[core] = {
                "arena_bytes": r.get("arena_used_bytes"),
                "code_bytes": (r.get("sections_bytes") or {}).get(".text"),
            }
    return {
        "source": str(path),
        "model_key": MODEL_KEYS.get(Path(model).name),
        "macs": None,
        "cores": cores,
        "per_operator": per_op,
        "memory": memory,
    }


def merge_references(refs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several JSON references for one model (e.g. one per core) as one; later files win per core and kernels."""
    refs = [r for r in refs if r]
    if not refs:
        return None
    out = {
        "source": ", ".join(r["source"] for r in refs),
        "model_key": refs[0]["model_key"],
        "macs": refs[0]["macs"],
        "cores": {},
        "per_operator": {},
        "memory": {},
    }
    for r in refs:
        for core, c in r["cores"].items():
            out["cores"].setdefault(core, {}).update(c)
        out["per_operator"].update(r["per_operator"])
        for core, m in r["memory"].items():
            out["memory"].setdefault(core, {}).update(m)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or zero (no reference: no ratio)."""
    return None if not a or not b else a / b


def fmt_ratio(r: float | None, digits: int = 2) -> str:
    return "-" if r is None else f"{r:.{digits}f}"


_TFLITE_INDEX = re.compile(r"_(\d+)(?:_[a-z]+)?$")


def tflite_index(op_name: str) -> int | None:
    """The TFLite operator index our importer puts at the end of an op's name ('conv_2d_3' -> 3, 'reshape_14_in' -> 14)."""
    m = _TFLITE_INDEX.search(op_name or "")
    return int(m.group(1)) if m else None


def _indices(op_name: str) -> list[int]:
    """The TFLite operator indices one of our ops runs: one, or each part of a fused op's name ('conv_2d_2+add_3')."""
    parts = [tflite_index(p) for p in (op_name or "").split("+")]
    return [] if any(i is None for i in parts) else [i for i in parts if i is not None]


def per_operator_table(ours: list[dict[str, Any]], ref: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Our per-operator counts grouped by TFLite operator index, beside the reference's (same index), with ratios.

    `ours`: rows of footprint's per_operator (name, kind, macs, count); `ref`: [{index, label, instructions}].
    An op of ours that runs several TFLite operators at once (a conv fused with its ADD, named 'conv_2d_2+add_3')
    is one row against the sum of theirs. Our ops whose names carry no TFLite index are listed alone (no reference,
    no ratio)."""
    refs = {r["index"]: r for r in (ref or [])}
    groups: dict[Any, dict[str, Any]] = {}
    covers: dict[Any, list[int]] = {}
    order: list[Any] = []
    for op in ours:
        idxs = _indices(op.get("name", ""))
        key = idxs[0] if idxs else f"ours:{op.get('name')}"
        if key not in groups:
            groups[key] = {"tflite_index": idxs[0] if idxs else None, "ours_ops": [], "macs": 0, "ours": 0.0}
            covers[key] = []
            order.append(key)
        g = groups[key]
        covers[key] += [i for i in idxs if i not in covers[key]]
        g["ours_ops"].append(op.get("name"))
        g["macs"] += int(op.get("macs") or 0)
        g["ours"] += float(op.get("count") or 0.0)
    covered = {i for c in covers.values() for i in c}
    for idx in refs:
        if idx not in groups and idx not in covered:
            groups[idx] = {"tflite_index": idx, "ours_ops": [], "macs": 0, "ours": None}
            covers[idx] = [idx]
            order.append(idx)
    rows = []
    for key in sorted(order, key=lambda k: (k if isinstance(k, int) else 10**9, str(k))):
        g = groups[key]
        theirs = [refs[i] for i in sorted(covers[key]) if i in refs]
        tflm = sum(r["instructions"] for r in theirs) if theirs else None
        rows.append(
            {
                **g,
                "tflm_label": " + ".join(r["label"] for r in theirs) if theirs else None,
                "tflm_cmsis_nn": tflm,
                "ratio": ratio(g["ours"], tflm),
            }
        )
    return rows
