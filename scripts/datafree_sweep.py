#!/usr/bin/env python
"""Compare DFME / MAZE settings against one victim over several attack seeds: stolen accuracy and fidelity.

Each `--set` is one column of options (the attack config's field names, comma-separated k=v); every set runs
with every seed and the same budget. Queries are the generator output clipped to the victim's valid pixels
unless a set says otherwise (generator_output=tanh | tanh-range | clip). No query log is written: this is
for choosing settings; `divqat-tvm attack` / `divqat-tvm experiment` are the logged, resumable paths.

    .venv/bin/python scripts/datafree_sweep.py --victim torch:runs/v/qat.pt --attack maze --budget 100000 \\
        --base batch_size=16,ngf=16,latent_dim=64 --set mu=0.001 --set mu=1 --set mu=1,lr_gen=0.001 \\
        --seeds 0 1 2 [--test-set mnist5k] [--student tinycnn] [--out runs/sweep.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from divqat_tvm.attacks.dfme import DFMEConfig, run_dfme
from divqat_tvm.attacks.generators import pixel_range
from divqat_tvm.attacks.maze import MAZEConfig, run_maze
from divqat_tvm.attacks.metrics import Evaluator, victim_top1
from divqat_tvm.cli.attack import input_normalization
from divqat_tvm.data import dataset_info, load_dataset
from divqat_tvm.errors import DivqatError
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.models import build_model
from divqat_tvm.oracle import open_oracle

ATTACKS = {"dfme": (DFMEConfig, run_dfme), "maze": (MAZEConfig, run_maze)}


def parse_options(text: str, cls) -> dict:
    """'k=v,k=v' → typed keyword arguments of the config class `cls` (int, float or str by its field)."""
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise DivqatError(
                f"Option {item!r} is not k=v with k a field of {cls.__name__}.",
                f"Use fields of {cls.__name__}: {', '.join(types)}.",
            )
        kind = types[key]
        if kind not in ("int", "float", "str"):
            raise DivqatError(
                f"Option {key} ({kind}) cannot be set from the command line here.", "Leave it at its default."
            )
        out[key] = int(value) if kind == "int" else float(value) if kind == "float" else value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", required=True, help="BACKEND:PATH")
    ap.add_argument("--attack", choices=sorted(ATTACKS), required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--base", default="", help="options every set shares (k=v,...)")
    ap.add_argument(
        "--set", dest="sets", action="append", default=None, help="one setting to compare (k=v,...); repeatable"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--test-set", default="mnist5k")
    ap.add_argument("--student", default="tinycnn")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cls, run = ATTACKS[args.attack]
    try:
        info = dataset_info(args.test_set)
        norm = input_normalization(args.victim, info)
        x, y = load_dataset(args.test_set, "test", normalization=norm).tensors()
        with open_oracle(args.victim) as ev:
            evaluator = Evaluator(x, y, torch.from_numpy(victim_top1(ev, x).astype("int64")), f"top-1 of {args.victim}")
        base = {"generator_output": "clip", **pixel_range(norm), **parse_options(args.base, cls)}
        sets = [parse_options(s, cls) for s in (args.sets or [""])]
        rows = []
        for opts in sets:
            try:
                cfg = cls(budget=args.budget, **{**base, **opts})
            except ValueError as e:
                raise DivqatError(
                    f"Invalid {args.attack} options {opts or '(base)'}: {e}", "Fix the value named above."
                ) from None
            runs = []
            for seed in args.seeds:
                torch.manual_seed(seed)
                student = build_model(args.student, info.input_shape[0], info.num_classes, info.input_shape[1])
                t0 = time.perf_counter()
                with open_oracle(args.victim, budget=args.budget) as oracle:
                    run(oracle, student, cfg, seed)
                runs.append({"seed": seed, **evaluator.score(student), "wall_s": round(time.perf_counter() - t0, 1)})
            acc = np.array([r["stolen_accuracy"] for r in runs])
            fid = np.array([r["fidelity"] for r in runs])
            rows.append(
                {
                    "set": opts,
                    "config": dataclasses.asdict(cfg),
                    "runs": runs,
                    "stolen_accuracy_mean": float(acc.mean()),
                    "fidelity_mean": float(fid.mean()),
                }
            )
            per_seed = " ".join(f"{100 * a:.1f}" for a in acc)
            print(
                f"{args.attack} {args.budget:,} q  {','.join(f'{k}={v}' for k, v in opts.items()) or '(base)':40} "
                f"stolen acc {100 * acc.mean():5.1f} ± {100 * acc.std(ddof=1) if len(acc) > 1 else 0:4.1f} % (seeds: {per_seed})  "
                f"fidelity {100 * fid.mean():5.1f} %",
                flush=True,
            )
    except DivqatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"victim {args.victim}: accuracy {100 * evaluator.victim_accuracy:.1f} % on {len(y)} {args.test_set} test images; "
        f"base options: {args.base or '(none)'}; seeds {args.seeds}"
    )
    if args.out:
        atomic_write_json(
            args.out,
            {
                "victim": args.victim,
                "attack": args.attack,
                "budget": args.budget,
                "base": args.base,
                "seeds": args.seeds,
                "victim_accuracy": evaluator.victim_accuracy,
                "rows": rows,
            },
        )
        print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
