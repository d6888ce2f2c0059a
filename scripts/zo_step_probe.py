#!/usr/bin/env python
"""How a victim's answers react to the zeroth-order step of DFME / MAZE: does a perturbation of norm ε change them?

Draws query-like images (N(0, 1) clipped to the victim's valid pixels, as the "clip" generator output does at
initialisation), perturbs each along unit directions scaled by ε, and prints per ε the fraction of answers
that changed at all, the mean |Δ log p| per unit of ε (the slope a forward difference sees) and each pixel's
move in 8-bit input levels. An int8 victim (any quantized checkpoint, tvm-host, qemu) rounds its input to
levels of 1/(255·std): below one level its answers mostly stay put and the rest jump by whole output steps.

    .venv/bin/python scripts/zo_step_probe.py --victim torch:runs/v/qat.pt [--victim torch:runs/v/teacher.pt]
        [--eps 1e-3 1e-2 0.1 1] [--images 16] [--dirs 50] [--out runs/zo_step_probe.json]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from divqat_tvm.attacks.dfme import unit_directions
from divqat_tvm.attacks.generators import output_map, pixel_move_in_levels, pixel_range
from divqat_tvm.attacks.losses import LOG_P_MIN
from divqat_tvm.errors import DivqatError
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.oracle import open_oracle, victim_meta


def probe(spec: str, eps_list: list[float], images: int, dirs: int, seed: int) -> list[dict]:
    """One row per ε for the victim `spec` (see the module docstring)."""
    norm = victim_meta(spec).get("normalization")
    if not norm:
        raise DivqatError(
            f"{spec} records no input normalisation, so its valid pixel range is unknown.",
            "Use a checkpoint or build made by divqat-tvm (their metadata carries it).",
        )
    bounds = pixel_range(norm)
    with open_oracle(spec) as oracle:
        shape = tuple(oracle.input_shape)
        clip = output_map("clip", bounds["pixel_low"], bounds["pixel_high"])
        gen = torch.Generator().manual_seed(seed)
        x_pre = torch.randn(images, *shape, generator=gen)
        u = unit_directions(images, dirs, shape, gen)
        base = np.log(np.maximum(oracle.query(clip(x_pre).numpy()), np.exp(LOG_P_MIN)))
        rows = []
        for eps in eps_list:
            moved = oracle.query(clip((x_pre[:, None] + eps * u).reshape(-1, *shape)).numpy()).reshape(images, dirs, -1)
            dlogp = np.abs(np.log(np.maximum(moved, np.exp(LOG_P_MIN))) - base[:, None]).sum(axis=2)
            rows.append(
                {
                    "victim": spec,
                    "eps": eps,
                    "changed_fraction": float((dlogp > 0).mean()),
                    "mean_abs_dlogp_per_eps": float(dlogp.mean() / eps),
                    "pixel_move_in_input_levels": pixel_move_in_levels(eps, shape, norm["std"]),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", action="append", required=True, help="BACKEND:PATH (repeatable)")
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-2, 0.1, 1.0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--dirs", type=int, default=50, help="unit directions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        rows = [r for v in args.victim for r in probe(v, args.eps, args.images, args.dirs, args.seed)]
    except DivqatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.images} images x {args.dirs} unit directions each")
    print(f"{'victim':40} {'eps':>8} {'answers changed':>16} {'mean |dlog p|/eps':>18} {'pixel move (levels)':>20}")
    for r in rows:
        print(
            f"{r['victim']:40} {r['eps']:>8g} {100 * r['changed_fraction']:>15.1f}% {r['mean_abs_dlogp_per_eps']:>18.4g} "
            f"{r['pixel_move_in_input_levels']:>20.3g}"
        )
    if args.out:
        atomic_write_json(args.out, {"images": args.images, "dirs": args.dirs, "seed": args.seed, "rows": rows})
        print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
