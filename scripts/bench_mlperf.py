#!/usr/bin/env python
"""MLPerf Tiny ResNet-8 (int8 TFLite): our compiled firmware under QEMU beside TFLite Micro.

Compiles ../shared/models/mlperf-tiny-resnet8-int8.tflite with `compile_tflite`, builds the firmware for
mps2-an500 (Cortex-M7), mps2-an386 (Cortex-M4) and mps3-an547 (Cortex-M55), runs it under QEMU
(-icount shift=0: instructions, exact and deterministic) with the plain and the profiling build, and
prints our figures next to TFLite Micro's (read from ../shared/models/README.md) and as ratios:
instructions per inference and per operator, code bytes, weight bytes, arena bytes, stack peak.
Writes everything to JSON (--json).

    .venv/bin/python scripts/bench_mlperf.py --out build/mlperf-resnet8 --json build/mlperf-resnet8/bench_mlperf.json
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "models"
BOARDS = {"mps2-an500": "Cortex-M7", "mps2-an386": "Cortex-M4", "mps3-an547": "Cortex-M55"}
GOALS = {"arena_bytes": 54_996, "code_bytes": 16 * 1024}  # issue 7, on Cortex-M7


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def tflm_figures(readme: Path) -> dict[str, Any]:
    """TFLite Micro's measured figures from the models README (instructions per core, per operator on M7, memory)."""
    text = readme.read_text()
    cores = {}
    for core, cmsis, ref in re.findall(r"\|\s*(Cortex-M\d+)[^|]*\|\s*([\d,]+) \([^)]*\)\s*\|\s*([\d,]+) \([^)]*\)\s*\|", text):
        cores[core] = {"cmsis_nn": _int(cmsis), "reference": _int(ref)}
    m = re.search(r"Cortex-M7 CMSIS-NN, per operator:(.*?)\n\n", text, re.S)
    per_op: list[tuple[str, int]] = []
    if m:
        for item in " ".join(m.group(1).split()).strip(" .").split(" · "):
            hit = re.match(r"(.*?)\s+([\d,]+)(\s*\(twice\))?$", item.strip())
            if hit:
                per_op += [(hit.group(1), _int(hit.group(2)))] * (2 if hit.group(3) else 1)

    def mem(pattern: str) -> int | None:
        hit = re.search(pattern, text)
        return _int(hit.group(1)) if hit else None

    memory = {"code_bytes": mem(r"code \(\.text\) ([\d,]+) B"), "model_bytes": mem(r"model ([\d,]+) B"),
              "arena_bytes": mem(r"arena used ([\d,]+) B"), "stack_peak_bytes": mem(r"stack peak ([\d,]+) B"),
              "other_rodata_bytes": mem(r"other read-only data ([\d,]+) B")}
    return {"instructions": cores, "per_operator_m7_cmsis_nn": per_op, "memory_m7_cmsis_nn": memory}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHARED / "mlperf-tiny-resnet8-int8.tflite")
    ap.add_argument("--readme", type=Path, default=SHARED / "README.md")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "mlperf-resnet8")
    ap.add_argument("--json", type=Path, default=None, help="default: OUT/bench_mlperf.json")
    ap.add_argument("--inputs", type=int, default=3, help="random inputs measured per board")
    ap.add_argument("--boards", nargs="*", default=list(BOARDS))
    ap.add_argument("--kernels", choices=("native", "te"), default="native",
                    help="native: hand-written C kernels where they apply (default); te: TVM-scheduled TE kernels only")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from divqat_tvm.compiler.tflite_import import compile_tflite
    from divqat_tvm.fileio import atomic_write_json
    from divqat_tvm.report.footprint import full_footprint

    con = Console(width=150)
    tflm = tflm_figures(args.readme)
    t0 = time.perf_counter()
    manifest = compile_tflite(args.model, args.out, target="mps2-an500", core="cortex-m7", kernels=args.kernels)
    compile_s = time.perf_counter() - t0
    results: dict[str, Any] = {}
    for board in tqdm(args.boards, desc="boards", unit="board"):
        results[board] = full_footprint(args.out, board, n=args.inputs)

    inst = Table("core (board)", "ours: instructions", "per MAC", "TFLM+CMSIS-NN", "ours / CMSIS-NN", "TFLM reference",
                 "ours / reference", title="Instructions per inference (QEMU -icount, exact)")
    macs = manifest["macs"]
    summary: dict[str, Any] = {}
    for board, fp in results.items():
        core = BOARDS.get(board, fp["core"])
        ours = fp["measured"]["model_per_inference"]["mean"]
        t = tflm["instructions"].get(core, {})
        summary[board] = {"core": core, "instructions": ours, "per_mac": ours / macs,
                          "tflm_cmsis_nn": t.get("cmsis_nn"), "tflm_reference": t.get("reference"),
                          "ratio_vs_cmsis_nn": ratio(ours, t.get("cmsis_nn")), "ratio_vs_reference": ratio(ours, t.get("reference")),
                          "stack_peak_bytes": fp["measured"]["stack_peak_bytes"]}
        s = summary[board]
        inst.add_row(f"{core} ({board})", f"{ours:,.0f}", f"{ours / macs:.2f}", f"{t.get('cmsis_nn', 0):,}",
                     f"{s['ratio_vs_cmsis_nn']:.2f}" if s["ratio_vs_cmsis_nn"] else "-", f"{t.get('reference', 0):,}",
                     f"{s['ratio_vs_reference']:.2f}" if s["ratio_vs_reference"] else "-")
    con.print(inst)

    per_op_rows = []
    if "mps2-an500" in results:
        ops = results["mps2-an500"]["measured"].get("per_operator") or []
        table = Table("#", "operator", "MACs", "ours", "TFLM+CMSIS-NN (M7)", "TFLM op", "ratio",
                      title="Cortex-M7 per operator (instructions)")
        ref_ops = tflm["per_operator_m7_cmsis_nn"]
        for i, op in enumerate(ops):
            label, ref = ref_ops[i] if i < len(ref_ops) else ("", None)
            per_op_rows.append({"index": i, "name": op["name"], "kind": op["kind"], "macs": op["macs"], "ours": op["count"],
                                "tflm_cmsis_nn_label": label, "tflm_cmsis_nn": ref, "ratio": ratio(op["count"], ref)})
            table.add_row(str(i), op["name"], f"{op['macs']:,}", f"{op['count']:,.0f}", f"{ref:,}" if ref else "-", label,
                          f"{op['count'] / ref:.1f}" if ref else "-")
        con.print(table)

        fp = results["mps2-an500"]
        parts = fp["flash_by_part_bytes"]
        model_code = parts.get("kernels", 0) + parts.get("model call sequence", 0)
        text = fp["sections_bytes"].get(".text", 0)
        mem = tflm["memory_m7_cmsis_nn"]
        memory = {
            "code_text_bytes": {"ours": text, "tflm": mem["code_bytes"], "ratio": ratio(text, mem["code_bytes"])},
            "model_code_bytes (kernels + call sequence)": {"ours": model_code, "tflm": None, "ratio": None},
            "weight_bytes": {"ours": fp["weight_bytes"], "tflm": mem["model_bytes"], "ratio": ratio(fp["weight_bytes"], mem["model_bytes"])},
            "arena_bytes": {"ours": fp["arena_bytes"], "tflm": mem["arena_bytes"], "ratio": ratio(fp["arena_bytes"], mem["arena_bytes"])},
            "stack_peak_bytes": {"ours": fp["measured"]["stack_peak_bytes"], "tflm": mem["stack_peak_bytes"],
                                 "ratio": ratio(fp["measured"]["stack_peak_bytes"], mem["stack_peak_bytes"])},
        }
        mt = Table("item (Cortex-M7)", "ours", "TFLM+CMSIS-NN", "ratio", title="Memory (bytes)")
        for k, v in memory.items():
            mt.add_row(k, f"{v['ours']:,}", f"{v['tflm']:,}" if v["tflm"] else "-", f"{v['ratio']:.2f}" if v["ratio"] else "-")
        con.print(mt)
        con.print("TFLM 'model' is the whole .tflite flatbuffer (weights + graph); ours is weights, bias and requantization "
                  "constants only. TFLM .text includes CMSIS-NN (42.1 KB) and the interpreter (36.5 KB).")
        goals = {"arena_bytes <= 54,996": fp["arena_bytes"] <= GOALS["arena_bytes"],
                 "code (.text, excluding weights) <= 16 KB": text <= GOALS["code_bytes"]}
        con.print("goals on Cortex-M7: " + ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in goals.items()))
    else:
        memory, goals = {}, {}

    out_json = args.json or args.out / "bench_mlperf.json"
    atomic_write_json(out_json, {"model": str(args.model), "macs": macs, "compile_seconds": compile_s,
                                 "inputs_per_board": args.inputs, "summary": summary, "memory_m7": memory,
                                 "goals_m7": goals, "per_operator_m7": per_op_rows, "tflm": tflm, "footprints": results})
    con.print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
