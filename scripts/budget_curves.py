#!/usr/bin/env python
"""Stolen fidelity against the query budget for KnockoffNets, DFME and MAZE against one victim (JSON + PNG).

Each (attack, budget, seed) runs through `run_attack` with a profile's settings (the budget replaced), in its own
folder under --out, so an interrupted sweep resumes from its query logs and finished points are not re-run. The
figures go to OUT/budget_curves.json; OUT/budget_curves.png is rendered from that JSON.

    PYTHONPATH=$PWD .venv/bin/python scripts/budget_curves.py --victim torch:runs/strong/cache/model/.../model.pt \\
        --profile strong --surrogate mnist5k@attacker --budgets 500 1000 2000 5000 10000 20000 --seeds 0 1 2 \\
        --out runs/budget
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from divqat_tvm.attacks.generators import pixel_range
from divqat_tvm.attacks.metrics import Evaluator, victim_top1
from divqat_tvm.attacks.runner import ATTACK_NAMES, run_attack
from divqat_tvm.cli.attack import input_normalization
from divqat_tvm.errors import DivqatError
from divqat_tvm.experiment.config import load_profile
from divqat_tvm.experiment.tasks import attack_config
from divqat_tvm.fileio import atomic_write_json
from divqat_tvm.models import build_model
from divqat_tvm.oracle import open_oracle
from divqat_tvm.train.splits import base_info, load_split


def plot(data: dict, path: Path) -> Path:
    """The PNG of a budget_curves.json: mean ± std fidelity (and stolen accuracy, dashed) per attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for attack, pts in data["curves"].items():
        b = [p["budget"] for p in pts]
        line = ax.errorbar(
            b,
            [100 * p["fidelity_mean"] for p in pts],
            yerr=[100 * p["fidelity_std"] for p in pts],
            marker="o",
            capsize=3,
            label=f"{ATTACK_NAMES.get(attack, attack)} fidelity",
        )
        ax.plot(
            b,
            [100 * p["stolen_accuracy_mean"] for p in pts],
            linestyle="--",
            color=line[0].get_color(),
            alpha=0.6,
            label=f"{ATTACK_NAMES.get(attack, attack)} stolen acc.",
        )
    ax.axhline(100 * data["victim_accuracy"], color="k", linewidth=0.8, linestyle=":", label="victim accuracy")
    ax.set_xscale("log")
    ax.set(xlabel="queries", ylabel="%", title=f"{data['victim']}: mean ± std over {len(data['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", required=True, help="BACKEND:PATH, e.g. torch:runs/dev/qat.pt")
    ap.add_argument(
        "--profile", default="strong", help="profile whose attack settings are used (quick, strong, paper or a .toml)"
    )
    ap.add_argument("--attacks", nargs="+", default=["knockoff", "dfme", "maze"], choices=sorted(ATTACK_NAMES))
    ap.add_argument("--budgets", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000, 20000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--surrogate", default="mnist5k@attacker", help="KnockoffNets' pool")
    ap.add_argument("--test-set", default="mnist5k")
    ap.add_argument("--student", default="tinycnn")
    ap.add_argument("--out", type=Path, default=Path("runs/budget"))
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except DivqatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    prof = load_profile(args.profile)
    info = base_info(args.test_set)
    norm = input_normalization(args.victim, info)
    x, y = load_split(args.test_set, "test", normalization=norm).tensors()
    with open_oracle(args.victim) as ev:
        pred = torch.from_numpy(victim_top1(ev, x).astype("int64"))
    evaluator = Evaluator(x, y, pred, f"top-1 of {args.victim} on {len(x)} {args.test_set} test images")
    surrogate = (
        load_split(args.surrogate, "train", augment=True, normalization=norm) if "knockoff" in args.attacks else None
    )
    c, h, _ = info.input_shape
    data = {
        "victim": args.victim,
        "profile": prof.name,
        "seeds": args.seeds,
        "budgets": args.budgets,
        "surrogate": args.surrogate,
        "victim_accuracy": evaluator.victim_accuracy,
        "curves": {},
        "runs": [],
    }
    jobs = [(a, b, s) for a in args.attacks for b in args.budgets for s in args.seeds]
    for attack, budget, seed in tqdm(jobs, desc="budget curves", unit="run", dynamic_ncols=True):
        params = {**prof.attacks[attack], "budget": budget}
        cfg = attack_config(attack, params)
        if getattr(cfg, "generator_output", "tanh") != "tanh" and not cfg.pixel_low:
            cfg = dataclasses.replace(cfg, **pixel_range(norm))
        folder = args.out / attack / f"b{budget}" / f"s{seed}"
        done = folder / "result.json"
        if done.exists():
            res = json.loads(done.read_text())
        else:
            torch.manual_seed(seed)
            student = build_model(args.student, c, info.num_classes, h)
            with open_oracle(args.victim, budget=budget) as oracle:
                res = run_attack(
                    attack,
                    oracle,
                    student,
                    folder,
                    cfg,
                    seed=seed,
                    surrogate=surrogate,
                    evaluator=evaluator,
                    log_inputs=False,
                    describe={"victim": args.victim, "student_arch": args.student},
                )
        data["runs"].append(
            {
                "attack": attack,
                "budget": budget,
                "seed": seed,
                "fidelity": res["fidelity"],
                "stolen_accuracy": res["stolen_accuracy"],
                "queries": res["queries_used"],
            }
        )
    for attack in args.attacks:
        pts = []
        for b in args.budgets:
            rs = [r for r in data["runs"] if r["attack"] == attack and r["budget"] == b]
            f = torch.tensor([r["fidelity"] for r in rs], dtype=torch.float64)
            a = torch.tensor([r["stolen_accuracy"] for r in rs], dtype=torch.float64)
            sd = lambda t: float(t.std()) if len(t) > 1 else 0.0  # noqa: E731
            pts.append(
                {
                    "budget": b,
                    "fidelity_mean": float(f.mean()),
                    "fidelity_std": sd(f),
                    "stolen_accuracy_mean": float(a.mean()),
                    "stolen_accuracy_std": sd(a),
                    "n": len(rs),
                }
            )
        data["curves"][attack] = pts
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "budget_curves.json", data)
    png = plot(data, args.out / "budget_curves.png")
    for attack, pts in data["curves"].items():
        print(
            f"{ATTACK_NAMES[attack]}: "
            + ", ".join(
                f"{p['budget']:,} q {100 * p['fidelity_mean']:.1f} ± {100 * p['fidelity_std']:.1f} %" for p in pts
            )
        )
    print(f"→ {args.out / 'budget_curves.json'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
