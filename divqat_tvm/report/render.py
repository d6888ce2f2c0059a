"""Render a run's report: `report.json` (the summary), `report.md`, one self-contained `report.html`, PNGs.

Every number printed comes from `results.summarize_run`, which reads only the per-task JSON files, so
`divqat-tvm report RUN_DIR` re-renders identical text from the same files at any time.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divqat_tvm.attacks.runner import ATTACK_NAMES
from divqat_tvm.fileio import atomic_write_json, atomic_write_text
from divqat_tvm.report import plots
from divqat_tvm.report.results import summarize_run, timing_of


@dataclass
class Table:
    """Headers and rows of strings, rendered alike to Markdown and HTML."""

    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        esc = [[c.replace("|", "\\|") for c in r] for r in [self.headers, *self.rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join(" --- " for _ in self.headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return f"{self.caption}\n\n" + "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return (
            f"<p>{html.escape(self.caption)}</p>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
        )


def pct(x: float | None) -> str:
    """0.9123 → "91.2"; missing → "—"."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def mean_std(s: dict[str, Any], n_expected: int) -> str:
    """ "91.2 ± 1.3" over seeds, noting when fewer seeds than planned have finished."""
    if not s["n"]:
        return "—"
    txt = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return txt if s["n"] >= n_expected else f"{txt} ({s['n']}/{n_expected} seeds)"


def _cells_per_victim(ds: dict[str, Any], attacks: list[str]) -> str:
    """ "30" when every attack has as many cells per victim, else "30 (KnockoffNets), 9 (DFME)"."""
    n = {a: ds["rows"][0]["attacks"][a]["n_expected"] for a in attacks} if ds["rows"] else {}
    if len(set(n.values())) <= 1:
        return str(next(iter(n.values()), 0))
    return ", ".join(f"{k} ({ATTACK_NAMES.get(a, a)})" for a, k in n.items())


def signed(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.1f}"


def main_table(ds: dict[str, Any], attacks: list[str]) -> Table:
    """Victim accuracy, then stolen accuracy and fidelity per attack (mean ± std over seeds, budget in the header)."""
    headers = ["Victim", "Victim acc. (%)"]
    budgets = {a: ds["rows"][0]["attacks"][a]["budget"] for a in attacks} if ds["rows"] else {}
    for a in attacks:
        name = f"{ATTACK_NAMES.get(a, a)} @ {budgets[a]:,} queries"
        headers += [f"{name}: stolen acc. (%)", f"{name}: fidelity (%)"]
    rows = []
    for r in ds["rows"]:
        row = [r["label"], pct(r["accuracy"])]
        for a in attacks:
            c = r["attacks"][a]
            row += [mean_std(c["stolen_accuracy"], c["n_expected"]), mean_std(c["fidelity"], c["n_expected"])]
        rows.append(row)
    caption = (
        f"Victim data {ds['dataset']} ({ds['arch']}), attacker's surrogate data {ds['surrogate']}. Stolen "
        f"accuracy on the victim's test set and fidelity (top-1 agreement with the victim) as mean ± std over "
        f"{_cells_per_victim(ds, attacks)} attack cell(s) per victim (attack seeds × victim seeds); the query budget of "
        "each attack is in its column header."
    )
    return Table(caption, headers, rows)


def comparison_table(ds: dict[str, Any], confidence: float) -> Table:
    """Treatment − control differences with Holm-corrected intervals, adjusted p-values and effect sizes."""
    c = int(round(100 * confidence))
    headers = [
        "Attack (budget)",
        "Treatment",
        "Control",
        "Victim seeds × attack seeds",
        f"Δ fidelity (points, Holm {c}% CI)",
        "p (Holm)",
        "Effect size d (Holm CI)",
        f"Δ stolen acc. (points, Holm {c}% CI)",
        "Victim acc. cost (points)",
        "Verdict on fidelity",
    ]
    rows = []
    for comp in ds["comparisons"]:
        f, s = comp["fidelity"], comp["stolen_accuracy"]
        rows.append(
            [
                f"{ATTACK_NAMES.get(comp['attack'], comp['attack'])} ({comp['budget']:,})",
                comp["treatment_label"],
                comp["control_label"],
                f"{f.get('n_victims', 1)} × {f.get('n_seeds', f['n'])}",
                _ci(f),
                _p(f.get("p_holm")),
                _effect(f),
                _ci(s),
                "—" if comp["accuracy_cost"] is None else f"{100 * comp['accuracy_cost']:+.1f}",
                f["verdict"] + (" (attack at chance)" if comp.get("near_chance") else ""),
            ]
        )
    fam = ds["comparisons"][0]["fidelity"].get("family_size", len(ds["comparisons"])) if ds["comparisons"] else 0
    caption = (
        f"Paired comparison: per (victim seed, attack seed), the treatment's figure minus the control's (negative = "
        f"the attacker did worse against the treatment). With several victim seeds the unit of the t-interval is "
        f"the victim seed (its mean over attack seeds), so the interval covers victim-to-victim variation. "
        f"Intervals and p-values are Holm-corrected over the {fam} comparisons of this table (family-wise "
        f"{c}%); a verdict says lowered/raised only when the corrected interval excludes zero. Effect size "
        f"d = mean difference / SD of the per-pair differences, with the corrected interval on the same scale."
    )
    return Table(caption, headers, rows)


def _ci(d: dict[str, Any]) -> str:
    if not d["n"]:
        return "—"
    if math.isnan(d["low"]):
        return f"{signed(d['mean'])} (one seed, no interval)"
    return f"{signed(d['mean'])} [{signed(d['low'])}, {signed(d['high'])}]"


def _p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _effect(d: dict[str, Any]) -> str:
    e = d.get("effect_size")
    if e is None or math.isnan(e):
        return "—"
    lo, hi = d.get("effect_low", math.nan), d.get("effect_high", math.nan)
    return f"{e:+.2f}" + ("" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]")


def victims_table(ds: dict[str, Any]) -> Table:
    """Per victim: accuracy over victim seeds, top-1 agreement with the teacher and with QAT, and how far its
    answers move (mean L1 of the probability vectors) from QAT's, from the same model undefended, and from the
    teacher's."""
    rows = []
    for r in ds["rows"]:
        a = r.get("accuracy_seeds")
        acc = "—" if a is None else (f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}" if a["n"] > 1 else pct(a["mean"]))

        def g(k: str, r: dict[str, Any] = r) -> dict[str, Any]:
            return r.get(k) or {}

        rows.append(
            [
                r["label"],
                acc,
                pct(g("agreement_with_teacher").get("mean")),
                pct(g("agreement_with_qat").get("mean")),
                _l1(g("l1_vs_qat").get("mean")),
                _l1(g("l1_vs_undefended").get("mean")),
                _l1(g("l1_vs_teacher").get("mean")),
            ]
        )
    n = max((len(r.get("victim_seeds", [])) for r in ds["rows"]), default=0)
    caption = (
        f"The victims on the {ds['dataset']} test set, mean over {n} victim seed(s) (± std when several): accuracy "
        f"through the deployed path, top-1 agreement with the float teacher and with the undefended QAT model, and "
        f"the mean L1 distance of the returned probability vectors from QAT's, from the same model without its "
        f"defence, and from the teacher's (0 to 2)."
    )
    return Table(
        caption,
        [
            "Victim",
            "Accuracy (%)",
            "Top-1 = teacher's (%)",
            "Top-1 = QAT's (%)",
            "L1 from QAT",
            "L1 from undefended",
            "L1 from teacher",
        ],
        rows,
    )


def _l1(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def sentence(comp: dict[str, Any], confidence: float) -> str:
    """One plain sentence: did the treatment lower stolen fidelity against its control, or is it noise?"""
    f = comp["fidelity"]
    a = f"Under {ATTACK_NAMES.get(comp['attack'], comp['attack'])} ({comp['budget']:,} queries, {f['n']} seed(s))"
    t, c = comp["treatment_label"], comp["control_label"]
    ta, ca = comp.get("treatment_accuracy"), comp.get("control_accuracy")
    cost = "" if ta is None or ca is None else f"; victim accuracy {pct(ta)}% against {pct(ca)}%"
    cl = int(round(100 * confidence))
    units = (
        f" over {f.get('n_victims', 1)} victim seed(s) × {f.get('n_seeds', f['n'])} attack seed(s)"
        if f.get("n_victims", 1) > 1
        else ""
    )
    if f["n"] == 0:
        return f"{a}: no finished seed pairs for {t} against {c} yet."
    if f["verdict"] in ("one seed", "no data"):
        return (
            f"{a}: {t} changed stolen fidelity by {signed(f['mean'])} points against {c}, from a single seed, "
            f"which cannot separate an effect from seed noise{cost}."
        )
    ci = f"Holm-corrected {cl}% CI {signed(f['low'])} to {signed(f['high'])}{units}"
    if comp.get("near_chance"):
        return (
            f"{a}: the attack stayed near chance ({100 * comp['chance']:.0f}%) against both {t} and {c} (stolen "
            f"fidelity differs by {signed(f['mean'])} points, {ci}), so at this budget it cannot show whether "
            f"{t} lowers what an attacker gets{cost}."
        )
    if f["verdict"] == "lowered":
        return f"{a}: {t} lowered stolen fidelity against {c} by {100 * -f['mean']:.1f} points ({ci}){cost}."
    if f["verdict"] == "raised":
        return f"{a}: {t} raised stolen fidelity against {c} by {100 * f['mean']:.1f} points ({ci}){cost}."
    return (
        f"{a}: the difference in stolen fidelity between {t} and {c}, {signed(f['mean'])} points ({ci}), is "
        f"within seed noise: no evidence that {t} lowered it{cost}."
    )


def footprint_table(ds: dict[str, Any]) -> Table | None:
    """Per deployed victim: the model's and the softmax + defence's count per inference, total, flash, RAM."""
    rows = ds["footprint"]
    if not rows:
        return None
    base = next((r["instructions_per_inference"] for r in rows if r["victim"] == "qat"), None)
    out = []
    for r in rows:
        ins = r["instructions_per_inference"]
        delta = "—" if base in (None, 0) or ins is None else f"{100 * (ins - base) / base:+.2f}%"
        out.append(
            [
                r["label"],
                _count(r.get("model_per_inference")),
                _count(r.get("postprocess_per_inference")),
                _count(ins),
                delta,
                _kib(r["flash_bytes"]),
                _kib(r["ram_bytes"]),
                _kib(r.get("stack_bytes")),
            ]
        )
    unit = rows[0].get("unit") or "instructions (emulated)"
    board = rows[0].get("board") or ""
    caption = (
        f"Defence cost on the device{f' ({board})' if board else ''}, in {unit} per inference (mean over "
        f"random inputs): the model, the on-device softmax and defence, and their total; flash and RAM of "
        f"the whole firmware image (RAM includes the stack region); the stack peak measured by painting."
    )
    return Table(
        caption,
        [
            "Victim",
            "Model",
            "Softmax + defence",
            "Total",
            "Total vs QAT",
            "Flash (KiB)",
            "RAM (KiB)",
            "Stack peak (KiB)",
        ],
        out,
    )


def _count(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _kib(b: int | None) -> str:
    return "—" if b is None else f"{b / 1024:.1f}"


def _numerics_name(n: dict[str, Any]) -> str:
    if n.get("cpu_capability") is None:
        return "not recorded (older task records)"
    return f"torch {n['torch']}, CPU capability {n['cpu_capability']} ({n['machine']})"


def numerics_line(numerics: list[dict[str, Any]]) -> tuple[str, bool]:
    """The report's sentence on the float numerics behind its tasks, and whether it is a warning: the same seed
    gives the same bits only under one CPU vector ISA (train.determinism), so a run whose tasks ran under two
    (a cluster of mixed nodes, a resumed run on another machine) may differ from a re-run by float rounding."""
    known = [n for n in numerics if n.get("cpu_capability") is not None]
    if not numerics:
        return "", False
    parts = "; ".join(f"{_numerics_name(n)}: {n['tasks']:,} task(s)" for n in numerics)
    if len(known) > 1:
        return (
            f"Mixed float numerics: {parts}. Same seed, same bits holds within one CPU vector ISA only, so cells "
            "computed under different ones differ by float rounding; re-run on one machine type (or set "
            "ATEN_CPU_CAPABILITY) to compare them bit for bit.",
            True,
        )
    return f"Float numerics: {parts}.", False


def render_report(run_dir: str | Path, confidence: float = 0.95) -> dict[str, Path]:
    """Write report.json, report.md, report.html and the PNGs into `run_dir`; returns their paths.

    Raises:
        DivqatError: `run_dir` is not a run directory.
    """
    run = Path(run_dir)
    summary = summarize_run(run, confidence)
    exp = summary["experiment"]
    attacks = list(exp["attacks"])
    paths: dict[str, Path] = {
        "json": atomic_write_json(run / "report.json", summary),
        "timing": atomic_write_json(run / "timing.json", timing_of(run)),
    }
    md: list[str] = []
    hb: list[str] = []
    title = f"divqat-tvm report: {exp['name']}"
    prof = exp["profile"]
    own = exp.get("attack_seeds", {})
    own_seeds = f" ({'; '.join(f'{ATTACK_NAMES.get(a, a)}: {v}' for a, v in own.items())})" if own else ""
    intro = (
        f"Profile `{prof['name']}` ({prof['description']}); oracle backend `{exp['backend']}`"
        f"{' on ' + exp['board'] if exp['backend'] == 'qemu' else ''}; attack seeds {exp['seeds']}{own_seeds}; victim seeds "
        f"{exp.get('victim_seeds', [0])}; {summary['cells_finished']} of {summary['cells_expected']} attack cells "
        f"finished. Attacks query the probabilities the deployed model returns (after any defence). Rendered "
        f"from the JSON files in this directory (`divqat-tvm report {run}`); wall times are in timing.json."
    )
    md += [f"# {title}\n", intro + "\n"]
    hb += [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    if summary["failed_tasks"]:
        warn = f"Failed tasks (see their .error.json; re-run the experiment to retry): {', '.join(summary['failed_tasks'])}."
        md.append(f"**{warn}**\n")
        hb.append(f"<p class='warn'>{html.escape(warn)}</p>")
    line, mixed = numerics_line(summary["numerics"])
    if line:
        md.append(f"**{line}**\n" if mixed else f"{line}\n")
        cls = " class='warn'" if mixed else ""
        hb.append(f"<p{cls}>{html.escape(line)}</p>")
    for ds in summary["datasets"]:
        name = ds["dataset"]
        md.append(f"## {name}\n")
        hb.append(f"<h2>{html.escape(name)}</h2>")
        t = main_table(ds, attacks)
        md.append(t.markdown())
        hb.append(t.html())
        t = victims_table(ds)
        md.append(t.markdown())
        hb.append(t.html())
        if ds["comparisons"]:
            md.append("### Does DivQAT lower what the attacker gets? (paired over seeds)\n")
            hb.append("<h3>Does DivQAT lower what the attacker gets? (paired over seeds)</h3>")
            sents = [sentence(c, confidence) for c in ds["comparisons"]]
            md.append("\n".join(f"- {s}" for s in sents) + "\n")
            hb.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sents) + "</ul>")
            t = comparison_table(ds, confidence)
            md.append(t.markdown())
            hb.append(t.html())
        figs = [
            (
                "alpha",
                plots.alpha_sweep_png(ds, run / f"alpha_sweep_{name}.png"),
                "Victim accuracy and stolen fidelity against α (α = 0 is QAT).",
            ),
            (
                "fidelity",
                plots.fidelity_png(ds, attacks, run / f"fidelity_{name}.png"),
                "Stolen fidelity per victim and attack (mean ± std over seeds).",
            ),
        ]
        for a in attacks:
            figs.append(
                (
                    f"tradeoff_{a}",
                    plots.tradeoff_png(ds, a, run / f"tradeoff_{a}_{name}.png"),
                    f"{ATTACK_NAMES.get(a, a)}: stolen fidelity against victim accuracy (left) and against the mean L1 "
                    "distance of the returned probability vectors from the undefended QAT model's (right), for the "
                    "DivQAT α sweep, RS and DCP β sweeps and DivQAT+DCP.",
                )
            )
        for key, png, cap in figs:
            if png is None:
                continue
            paths[f"{key}_{name}"] = png
            md.append(f"![{cap}]({png.name})\n\n{cap}\n")
            b64 = base64.b64encode(png.read_bytes()).decode()
            hb.append(
                f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{b64}'><figcaption>{html.escape(cap)}</figcaption></figure>"
            )
        ft = footprint_table(ds)
        if ft is not None:
            md.append("### Defence cost on the device\n")
            hb.append("<h3>Defence cost on the device</h3>")
            md.append(ft.markdown())
            hb.append(ft.html())
    paths["md"] = atomic_write_text(run / "report.md", "\n".join(md))
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(hb) + "\n</body></html>\n"
    )
    paths["html"] = atomic_write_text(run / "report.html", page)
    return paths


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}.warn{color:#a00}"
    "figure{margin:1em 0}figcaption{font-size:.9em;color:#555}"
)


def headline(run_dir: str | Path) -> list[str]:
    """The sentences the demo prints at the end (from report.json)."""
    import json

    summary = json.loads((Path(run_dir) / "report.json").read_text())
    lines = []
    for ds in summary["datasets"]:
        for r in ds["rows"]:
            parts = [f"{r['label']}: victim acc. {pct(r['accuracy'])}%"]
            for a, c in r["attacks"].items():
                if c["fidelity"]["n"]:
                    parts.append(
                        f"{ATTACK_NAMES.get(a, a)} stolen acc. {pct(c['stolen_accuracy']['mean'])}%, fidelity "
                        f"{pct(c['fidelity']['mean'])}% ({c['budget']:,} queries, {c['fidelity']['n']} seeds)"
                    )
            lines.append("; ".join(parts))
        lines += [sentence(c, summary["confidence"]) for c in ds["comparisons"]]
        feet = [f for f in ds["footprint"] if f.get("instructions_per_inference") is not None]
        if feet:
            lines.append(
                f"Per inference on {feet[0].get('board')} ({feet[0].get('unit')}): "
                + "; ".join(f"{f['label']} {f['instructions_per_inference']:,.0f}" for f in feet)
                + "."
            )
    return lines
