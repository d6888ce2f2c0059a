#!/usr/bin/env python
"""An MLPerf Tiny int8 TFLite model: our compiled firmware under QEMU beside TFLite Micro on the SAME model.

Compiles MODEL (default ../shared/models/mlperf-tiny-resnet8-int8.tflite; also kws_ref_model.tflite,
vww_96_int8.tflite, ad01_int8.tflite) with `compile_tflite`, builds the firmware for mps2-an500 (Cortex-M7),
mps2-an386 (Cortex-M4) and mps3-an547 (Cortex-M55), runs it under QEMU (-icount shift=0: instructions, exact and
deterministic) with the plain and the profiling build, and prints our figures next to TFLite Micro's for that
model and as ratios: instructions per inference and per operator, code bytes, weight bytes, arena bytes, stack.

TFLM's figures come from --tflm-json (one or more JSONs written by scripts/tflm_reference.py for this model;
checked by sha256) or else from this model's rows of ../shared/models/README.md (divqat_tvm/report/tflm_anchor.py
parses them). A model with no reference figures gets no ratios ("-"); one our compiler cannot compile (AD01's
2-D input today) is reported as such, with TFLM's figures alone, and the JSON records the reason (exit 0).
Writes everything to JSON (--json).

MODEL may also be a QDQ ONNX model (a DivQAT student from `divqat-tvm export`): it is compiled with
`compile_onnx` (NCHW graph converted to NHWC inside) and measured the same way, without TFLM figures (no
ratios); `--kernels te` and `--kernels native` give the before/after of the hand-written kernels on it.
`--tune-cache CACHE` compiles the model once per board's core with the kernel choices `divqat-tvm compile --tune`
stored in CACHE (compiler/tune.py) and measures each board on its own core's build.

    .venv/bin/python scripts/bench_mlperf.py --model ../shared/models/kws_ref_model.tflite --tflm-json build/tflm/kws-m7.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from divqat_tvm.report.tflm_anchor import (  # noqa: E402  (after the sys.path line: runs from a clone)
    BOARD_CORE,
    AnchorError,
    fmt_ratio,
    merge_references,
    per_operator_table,
    ratio,
    readme_reference,
    reference_from_json,
)

SHARED = ROOT.parent / "shared" / "models"
BOARDS = dict(BOARD_CORE)  # board -> core name
GOALS = {"arena_bytes": 54_996, "code_bytes": 16 * 1024}  # issue 7, ResNet-8 on Cortex-M7


def load_reference(model: Path, readme: Path, jsons: list[Path] | None) -> dict[str, Any] | None:
    """This model's TFLM figures: from the tflm_reference JSONs when given, else the README; None when none."""
    if jsons:
        return merge_references([reference_from_json(p, model) for p in jsons])
    if readme.is_file():
        return readme_reference(readme, model)
    return None


def summary_rows(results: dict[str, Any], ref: dict[str, Any] | None, macs: int | None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for board, fp in results.items():
        core = BOARDS.get(board, fp.get("core"))
        ours = fp["measured"]["model_per_inference"]["mean"]
        t = ((ref or {}).get("cores") or {}).get(core, {})
        summary[board] = {
            "core": core,
            "instructions": ours,
            "per_mac": ours / macs if macs else None,
            "tflm_cmsis_nn": t.get("cmsis_nn"),
            "tflm_cmsis_nn_method": t.get("cmsis_nn_method"),
            "tflm_reference": t.get("reference"),
            "tflm_reference_method": t.get("reference_method"),
            "ratio_vs_cmsis_nn": ratio(ours, t.get("cmsis_nn")),
            "ratio_vs_reference": ratio(ours, t.get("reference")),
            "stack_peak_bytes": fp["measured"]["stack_peak_bytes"],
        }
    return summary


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f}"


INSTRUCTION_COLUMNS = (
    "core (board)",
    "ours: instructions",
    "per MAC",
    "TFLM+CMSIS-NN",
    "ours / CMSIS-NN",
    "TFLM reference",
    "ours / reference",
)


def instruction_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The printed instructions table: "-" wherever the model has no reference figure (and so no ratio)."""
    return [
        [
            f"{s['core']} ({board})",
            _n(s["instructions"]),
            f"{s['per_mac']:.2f}" if s["per_mac"] else "-",
            _n(s["tflm_cmsis_nn"]),
            fmt_ratio(s["ratio_vs_cmsis_nn"]),
            _n(s["tflm_reference"]),
            fmt_ratio(s["ratio_vs_reference"]),
        ]
        for board, s in summary.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHARED / "mlperf-tiny-resnet8-int8.tflite")
    ap.add_argument("--readme", type=Path, default=SHARED / "README.md")
    ap.add_argument(
        "--tflm-json",
        type=Path,
        nargs="+",
        default=None,
        help="scripts/tflm_reference.py JSON(s) measured on this model (instead of the README)",
    )
    ap.add_argument("--out", type=Path, default=None, help="default: build/mlperf-<model stem>")
    ap.add_argument("--json", type=Path, default=None, help="default: OUT/bench_mlperf.json")
    ap.add_argument("--inputs", type=int, default=3, help="random inputs measured per board")
    ap.add_argument("--boards", nargs="*", default=list(BOARDS))
    ap.add_argument(
        "--tune-cache",
        type=Path,
        default=None,
        help="compile once per core with the kernel choices of this tuning cache (divqat-tvm compile --tune)",
    )
    ap.add_argument(
        "--kernels",
        choices=("native", "te"),
        default="native",
        help="native: hand-written C kernels where they apply (default); te: TVM-scheduled TE kernels only",
    )
    args = ap.parse_args()
    if not args.model.is_file():
        print(f"bench_mlperf: error: model {args.model} does not exist", file=sys.stderr)
        return 2
    try:
        ref = load_reference(args.model, args.readme, args.tflm_json)
    except AnchorError as e:
        print(f"bench_mlperf: error: {e}", file=sys.stderr)
        return 2
    out_dir = args.out or ROOT / "build" / f"mlperf-{args.model.stem}"

    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from divqat_tvm.compiler.generate import compile_onnx
    from divqat_tvm.compiler.tflite_import import compile_tflite, is_tflite
    from divqat_tvm.device.footprint import measure_footprint
    from divqat_tvm.errors import CompileError
    from divqat_tvm.fileio import atomic_write_json

    con = Console(width=150)
    out_json = args.json or out_dir / "bench_mlperf.json"
    con.print(f"model {args.model.name}; TFLM reference: {ref['source'] if ref else 'none for this model (no ratios)'}")
    t0 = time.perf_counter()
    try:
        compile_fn = compile_tflite if is_tflite(args.model) else compile_onnx
        manifest = compile_fn(args.model, out_dir, target="mps2-an500", core="cortex-m7", kernels=args.kernels)
    except CompileError as e:
        con.print(f"ours: {args.model.name} does not compile with our compiler: {e}")
        if ref:
            t = Table("core", "TFLM+CMSIS-NN", "TFLM reference", title=f"TFLite Micro alone ({args.model.name})")
            for core, c in ref["cores"].items():
                t.add_row(core, _n(c.get("cmsis_nn")), _n(c.get("reference")))
            con.print(t)
        atomic_write_json(
            out_json,
            {
                "model": str(args.model),
                "status": "compile_failed",
                "compile_error": str(e),
                "summary": {},
                "per_operator": {},
                "tflm": ref,
            },
        )
        con.print(f"wrote {out_json}")
        return 0
    compile_s = time.perf_counter() - t0
    results: dict[str, Any] = {}
    tuned: dict[str, Any] = {}
    for board in tqdm(args.boards, desc="boards", unit="board"):
        build = out_dir
        if args.tune_cache is not None:  # the choices are per core: one compile per board's core
            from divqat_tvm.compiler.tune import Tuning
            from divqat_tvm.targets import load_board

            core = load_board(board).core
            build = out_dir / f"tuned-{core}"
            m = compile_fn(args.model, build, target=board, core=core, tuning=Tuning(args.tune_cache))
            tuned[board] = {o["name"]: o["kernel"]["tuned"] for o in m["ops"] if "tuned" in o["kernel"]}
        results[board] = measure_footprint(build, board, n=args.inputs)

    macs = manifest.get("macs")
    summary = summary_rows(results, ref, macs)
    inst = Table(*INSTRUCTION_COLUMNS, title=f"Instructions per inference, {args.model.name} (QEMU -icount)")
    for row in instruction_rows(summary):
        inst.add_row(*row)
    con.print(inst)

    per_op: dict[str, list[dict[str, Any]]] = {}
    for board, fp in results.items():
        core = BOARDS.get(board)
        ref_ops = ((ref or {}).get("per_operator") or {}).get(core)
        ops = fp["measured"].get("per_operator") or []
        if not ref_ops or not ops:
            continue
        rows = per_operator_table(ops, ref_ops)
        per_op[board] = rows
        table = Table(
            "TFLite op",
            "ours (ops)",
            "MACs",
            "ours",
            "TFLM+CMSIS-NN",
            "TFLM op",
            "ratio",
            title=f"{core} per operator (instructions), {args.model.name}",
        )
        for r in rows:
            table.add_row(
                "-" if r["tflite_index"] is None else str(r["tflite_index"]),
                ", ".join(r["ours_ops"]) or "-",
                f"{r['macs']:,}",
                _n(r["ours"]),
                _n(r["tflm_cmsis_nn"]),
                r["tflm_label"] or "-",
                fmt_ratio(r["ratio"], 1),
            )
        con.print(table)

    memory, goals = {}, {}
    if "mps2-an500" in results:
        fp = results["mps2-an500"]
        parts = fp["flash_by_part_bytes"]
        model_code = parts.get("kernels", 0) + parts.get("model call sequence", 0)
        text = fp["sections_bytes"].get(".text", 0)
        mem = ((ref or {}).get("memory") or {}).get("Cortex-M7") or {}
        stack = fp["measured"]["stack_peak_bytes"]
        memory = {
            "code_text_bytes": {
                "ours": text,
                "tflm": mem.get("code_bytes"),
                "ratio": ratio(text, mem.get("code_bytes")),
            },
            "model_code_bytes (kernels + call sequence)": {"ours": model_code, "tflm": None, "ratio": None},
            "weight_bytes": {
                "ours": fp["weight_bytes"],
                "tflm": mem.get("model_bytes"),
                "ratio": ratio(fp["weight_bytes"], mem.get("model_bytes")),
            },
            "arena_bytes": {
                "ours": fp["arena_bytes"],
                "tflm": mem.get("arena_bytes"),
                "ratio": ratio(fp["arena_bytes"], mem.get("arena_bytes")),
            },
            "stack_peak_bytes": {
                "ours": stack,
                "tflm": mem.get("stack_peak_bytes"),
                "ratio": ratio(stack, mem.get("stack_peak_bytes")),
            },
        }
        mt = Table("item (Cortex-M7)", "ours", "TFLM+CMSIS-NN", "ratio", title="Memory (bytes)")
        for k, v in memory.items():
            mt.add_row(k, f"{v['ours']:,}", _n(v["tflm"]), fmt_ratio(v["ratio"]))
        con.print(mt)
        con.print(
            "TFLM 'model' is the whole .tflite flatbuffer (weights + graph); ours is weights, bias and requantization "
            "constants only. TFLM .text includes CMSIS-NN and the interpreter."
        )
        if ref and ref.get("model_key") == "resnet8":
            goals = {
                "arena_bytes <= 54,996": fp["arena_bytes"] <= GOALS["arena_bytes"],
                "code (.text, excluding weights) <= 16 KB": text <= GOALS["code_bytes"],
            }
            con.print(
                "goals on Cortex-M7: " + ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in goals.items())
            )

    atomic_write_json(
        out_json,
        {
            "model": str(args.model),
            "status": "ok",
            "kernels": args.kernels,
            "tune_cache": str(args.tune_cache) if args.tune_cache else None,
            "tuned": tuned,
            "arena_bound_bytes": manifest.get("arena_bound_bytes"),
            "macs": macs,
            "compile_seconds": compile_s,
            "inputs_per_board": args.inputs,
            "summary": summary,
            "memory_m7": memory,
            "goals_m7": goals,
            "per_operator": per_op,
            "per_operator_m7": per_op.get("mps2-an500", []),
            "tflm": ref,
            "footprints": results,
        },
    )
    con.print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
