"""PNG plots of a run summary (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from divqat_tvm.attacks.runner import ATTACK_NAMES  # noqa: E402
from divqat_tvm.fileio import atomic_write_bytes  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def alpha_sweep_png(ds: dict[str, Any], path: Path) -> Path | None:
    """Victim accuracy and stolen fidelity (mean ± std over seeds, per attack) against α; None if no sweep."""
    pts = ds["alpha_sweep"]
    if not pts:
        return None
    alphas = [p["alpha"] for p in pts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    acc = [100 * p["accuracy"] if p["accuracy"] is not None else float("nan") for p in pts]
    ax1.plot(alphas, acc, "o-", color="black")
    ax1.set(xlabel="α (0 = QAT)", ylabel="victim accuracy (%)", title=f"{ds['dataset']}: victim")
    for attack in pts[0]["fidelity"]:
        m = [100 * p["fidelity"][attack]["mean"] for p in pts]
        s = [100 * p["fidelity"][attack]["std"] for p in pts]
        ax2.errorbar(alphas, m, yerr=s, marker="o", capsize=3, label=ATTACK_NAMES.get(attack, attack))
    ax2.set(xlabel="α (0 = QAT)", ylabel="stolen fidelity (%)", title="stolen model (mean ± std over seeds)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def fidelity_png(ds: dict[str, Any], attacks: list[str], path: Path) -> Path | None:
    """Stolen fidelity per victim and attack as grouped bars with std error bars; None without data."""
    rows = [r for r in ds["rows"] if any(r["attacks"][a]["fidelity"]["n"] for a in attacks)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) * max(1, len(attacks)) ** 0.5 + 2), 3.8))
    width = 0.8 / len(attacks)
    for i, a in enumerate(attacks):
        xs = [j + (i - (len(attacks) - 1) / 2) * width for j in range(len(rows))]
        m = [100 * r["attacks"][a]["fidelity"]["mean"] for r in rows]
        s = [100 * r["attacks"][a]["fidelity"]["std"] for r in rows]
        ax.bar(
            xs, m, width, yerr=s, capsize=3, label=f"{ATTACK_NAMES.get(a, a)} ({rows[0]['attacks'][a]['budget']:,} q)"
        )
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="stolen fidelity (%)", title=f"{ds['dataset']}: agreement of the stolen model with the victim")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


#: marker per trade-off series (QAT is every sweep's common zero point)
_SERIES_STYLE = {
    "QAT": ("k", "*"),
    "DivQAT (α sweep)": ("tab:blue", "o"),
    "DivQAT-nontop (α sweep)": ("tab:cyan", "D"),
    "QAT + RS (β sweep)": ("tab:orange", "s"),
    "QAT + DCP (β sweep)": ("tab:green", "^"),
    "DivQAT + DCP": ("tab:red", "v"),
    "DivQAT-nontop + DCP": ("tab:pink", "P"),
}


def tradeoff_png(ds: dict[str, Any], attack: str, path: Path) -> Path | None:
    """Stolen fidelity against victim accuracy and against the mean L1 perturbation of the answers, one series per
    protection (sorted along its sweep parameter); None when the attack has no points."""
    pts = ds.get("tradeoff", {}).get(attack)
    if not pts:
        return None
    series: dict[str, list[dict[str, Any]]] = {}
    for p in pts:
        series.setdefault(p["series"], []).append(p)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, ps in series.items():
        ps = sorted(ps, key=lambda p: (p["alpha"] or 0.0, p["beta"] or 0.0))
        color, marker = _SERIES_STYLE.get(name, (None, "o"))
        for ax, xkey, scale in ((axes[0], "accuracy", 100.0), (axes[1], "l1_vs_qat", 1.0)):
            xs = [p[xkey] * scale if p[xkey] is not None else float("nan") for p in ps]
            ax.errorbar(
                xs,
                [100 * p["fidelity"] for p in ps],
                yerr=[100 * p["fidelity_std"] for p in ps],
                color=color,
                marker=marker,
                capsize=2,
                linestyle="-" if len(ps) > 1 else "none",
                label=name,
            )
            for x, p in zip(xs, ps):
                par = p["alpha"] if p["alpha"] is not None else p["beta"]
                if par is not None:
                    ax.annotate(
                        f"{par:g}", (x, 100 * p["fidelity"]), fontsize=6, xytext=(3, 3), textcoords="offset points"
                    )
    budget = next((r["attacks"][attack]["budget"] for r in ds["rows"] if attack in r["attacks"]), None)
    name = ATTACK_NAMES.get(attack, attack)
    axes[0].set(
        xlabel="victim accuracy (%)", ylabel="stolen fidelity (%)", title=f"{name} @ {budget:,} queries: utility"
    )
    axes[1].set(
        xlabel="mean L1 distance of the answers from QAT's",
        ylabel="stolen fidelity (%)",
        title="perturbation of the returned probabilities",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return _save(fig, path)
