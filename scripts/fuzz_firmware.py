#!/usr/bin/env python3
"""A longer fuzzing campaign of the device code on the host (libFuzzer + ASan + UBSan; divqat_tvm/device/hostfuzz.py).

    python scripts/fuzz_firmware.py --minutes 30 [--jobs 2] [--out build/fuzz] [--merge]

Runs the fuzz target from the committed seed corpus (firmware/fuzz/corpus/), writing new inputs to OUT/corpus,
crashes to OUT/artifacts; then replays everything through a source-coverage build and prints (and writes to
OUT/summary.json) the inputs executed, edges and features covered, line coverage of protocol.c / main.c /
postprocess.c, and the findings. --merge minimises OUT/corpus into the committed seeds (libFuzzer -merge=1);
--reseed rewrites the generated seeds. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from divqat_tvm.device import hostfuzz as H  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per job")
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs per job instead (0: time only)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("build/fuzz"))
    ap.add_argument("--merge", action="store_true", help="minimise the new corpus into firmware/fuzz/corpus")
    ap.add_argument("--reseed", action="store_true", help="rewrite the generated seeds first")
    a = ap.parse_args(argv)
    if a.reseed:
        print(f"seeds: {H.write_seed_corpus()} files in {H.CORPUS_DIR}")
    exe = H.build_fuzzer(a.out)
    t0 = time.monotonic()
    procs = []
    for j in range(a.jobs):
        procs.append(
            (
                j,
                H.run_fuzzer,
                dict(
                    exe=exe,
                    work_corpus=a.out / "corpus",
                    seed_corpora=[H.CORPUS_DIR],
                    runs=a.runs or -1,
                    seed=a.seed + j,
                    max_total_time=int(a.minutes * 60),
                    artifacts=a.out / "artifacts",
                ),
            )
        )
    if a.jobs == 1:
        results = [H.run_fuzzer(**procs[0][2])]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(a.jobs) as pool:
            results = list(pool.map(lambda p: p[1](**p[2]), procs))
    findings = sorted({f for r in results for f in r.findings})
    cov = H.line_coverage(a.out / "cov", [a.out / "corpus", H.CORPUS_DIR])
    summary = {
        "inputs": sum(r.inputs for r in results),
        "jobs": a.jobs,
        "seconds": round(time.monotonic() - t0, 1),
        "edges": max(r.coverage_edges for r in results),
        "features": max(r.features for r in results),
        "corpus_units": len(list((a.out / "corpus").glob("*"))),
        "line_coverage_percent": cov,
        "findings": findings,
        "sanitizers": H.SANITIZE,
    }
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if a.merge:
        subprocess.run(
            [str(exe), "-merge=1", str(H.CORPUS_DIR), str(a.out / "corpus")], check=True, capture_output=True
        )
        print(f"merged into {H.CORPUS_DIR}: {len(list(H.CORPUS_DIR.glob('*')))} files")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
