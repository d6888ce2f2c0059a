"""Render a run's report: `report.json` (the summary), `report.md`, one self-contained `report.html`, PNGs.

Every number printed comes from `results.summarize_run`, which reads only the per-task JSON files, so
`divqat-tvm report RUN_DIR` re-renders identical text from the same files at any time.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from divqat_tvm.attacks.runner import ATTACK_NAMES
from divqat_tvm.fileio import atomic_write_json, atomic_write_text
from divqat_tvm.report import plots
from divqat_tvm.report.results import summarize_run


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
        return f"<p>{html.escape(self.caption)}</p>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


def pct(x: float | None) -> str:
    """0.9123 → "91.2"; missing → "—"."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def mean_std(s: dict[str, Any], n_expected: int) -> str:
    """"91.2 ± 1.3" over seeds, noting when fewer seeds than planned have finished."""
    if not s["n"]:
        return "—"
    txt = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return txt if s["n"] >= n_expected else f"{txt} ({s['n']}/{n_expected} seeds)"


def signed(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.1f}"


def main_table(ds: dict[str, Any], attacks: list[str], seeds: int) -> Table:
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
    caption = (f"Victim data {ds['dataset']} ({ds['arch']}), attacker's surrogate data {ds['surrogate']}. Stolen "
               f"accuracy on the victim's test set and fidelity (top-1 agreement with the victim) as mean ± std over "
               f"{seeds} attack seed(s); the query budget of each attack is in its column header.")
    return Table(caption, headers, rows)


def comparison_table(ds: dict[str, Any], confidence: float) -> Table:
    """Paired per-seed differences DivQAT − QAT (and with the same defence), with t-intervals."""
    c = int(round(100 * confidence))
    headers = ["Attack (budget)", "Treatment", "Control", "Seeds", f"Δ fidelity (points, {c}% CI)",
               f"Δ stolen acc. (points, {c}% CI)", "Victim acc. cost (points)", "Verdict on fidelity"]
    rows = []
    for comp in ds["comparisons"]:
        f, s = comp["fidelity"], comp["stolen_accuracy"]
        rows.append([f"{ATTACK_NAMES.get(comp['attack'], comp['attack'])} ({comp['budget']:,})", comp["treatment_label"],
                     comp["control_label"], str(f["n"]), _ci(f), _ci(s),
                     "—" if comp["accuracy_cost"] is None else f"{100 * comp['accuracy_cost']:+.1f}",
                     f["verdict"] + (" (attack at chance)" if comp.get("near_chance") else "")])
    caption = (f"Paired comparison: per attack seed, the treatment's figure minus the control's (negative = the "
               f"attacker did worse against the treatment); Student t-interval at {c}% on the mean difference.")
    return Table(caption, headers, rows)


def _ci(d: dict[str, Any]) -> str:
    if not d["n"]:
        return "—"
    if d["n"] < 2:
        return f"{signed(d['mean'])} (one seed, no interval)"
    return f"{signed(d['mean'])} [{signed(d['low'])}, {signed(d['high'])}]"


def sentence(comp: dict[str, Any], confidence: float) -> str:
    """One plain sentence: did the treatment lower stolen fidelity against its control, or is it noise?"""
    f = comp["fidelity"]
    a = f"Under {ATTACK_NAMES.get(comp['attack'], comp['attack'])} ({comp['budget']:,} queries, {f['n']} seed(s))"
    t, c = comp["treatment_label"], comp["control_label"]
    ta, ca = comp.get("treatment_accuracy"), comp.get("control_accuracy")
    cost = "" if ta is None or ca is None else f"; victim accuracy {pct(ta)}% against {pct(ca)}%"
    cl = int(round(100 * confidence))
    if f["n"] == 0:
        return f"{a}: no finished seed pairs for {t} against {c} yet."
    if f["verdict"] == "one seed":
        return (f"{a}: {t} changed stolen fidelity by {signed(f['mean'])} points against {c}, from a single seed, "
                f"which cannot separate an effect from seed noise{cost}.")
    ci = f"{cl}% CI {signed(f['low'])} to {signed(f['high'])}"
    if comp.get("near_chance"):
        return (f"{a}: the attack stayed near chance ({100 * comp['chance']:.0f}%) against both {t} and {c} (stolen "
                f"fidelity differs by {signed(f['mean'])} points, {ci}), so at this budget it cannot show whether "
                f"{t} lowers what an attacker gets{cost}.")
    if f["verdict"] == "lowered":
        return f"{a}: {t} lowered stolen fidelity against {c} by {100 * -f['mean']:.1f} points ({ci}){cost}."
    if f["verdict"] == "raised":
        return f"{a}: {t} raised stolen fidelity against {c} by {100 * f['mean']:.1f} points ({ci}){cost}."
    return (f"{a}: the difference in stolen fidelity between {t} and {c}, {signed(f['mean'])} points ({ci}), is "
            f"within seed noise: no evidence that {t} lowered it{cost}.")


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
        out.append([r["label"], _count(r.get("model_per_inference")), _count(r.get("postprocess_per_inference")),
                    _count(ins), delta, _kib(r["flash_bytes"]), _kib(r["ram_bytes"]), _kib(r.get("stack_bytes"))])
    unit = rows[0].get("unit") or "instructions (emulated)"
    board = rows[0].get("board") or ""
    caption = (f"Defence cost on the device{f' ({board})' if board else ''}, in {unit} per inference (mean over "
               f"random inputs): the model, the on-device softmax and defence, and their total; flash and RAM of "
               f"the whole firmware image (RAM includes the stack region); the stack peak measured by painting.")
    return Table(caption, ["Victim", "Model", "Softmax + defence", "Total", "Total vs QAT", "Flash (KiB)", "RAM (KiB)",
                           "Stack peak (KiB)"], out)


def _count(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _kib(b: int | None) -> str:
    return "—" if b is None else f"{b / 1024:.1f}"


def render_report(run_dir: str | Path, confidence: float = 0.95) -> dict[str, Path]:
    """Write report.json, report.md, report.html and the PNGs into `run_dir`; returns their paths.

    Raises:
        DivqatError: `run_dir` is not a run directory.
    """
    run = Path(run_dir)
    summary = summarize_run(run, confidence)
    exp = summary["experiment"]
    attacks = list(exp["attacks"])
    paths: dict[str, Path] = {"json": atomic_write_json(run / "report.json", summary)}
    md: list[str] = []
    hb: list[str] = []
    title = f"divqat-tvm report: {exp['name']}"
    prof = exp["profile"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"Profile `{prof['name']}` ({prof['description']}); oracle backend `{exp['backend']}`"
             f"{' on ' + exp['board'] if exp['backend'] == 'qemu' else ''}; attack seeds {exp['seeds']}; "
             f"{summary['cells_finished']} of {summary['cells_expected']} attack cells finished. "
             f"Attacks query the probabilities the deployed model returns (after any defence). Rendered {when} "
             f"from the JSON files in this directory (`divqat-tvm report {run}`).")
    md += [f"# {title}\n", intro + "\n"]
    hb += [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    if summary["failed_tasks"]:
        warn = f"Failed tasks (see their .error.json; re-run the experiment to retry): {', '.join(summary['failed_tasks'])}."
        md.append(f"**{warn}**\n")
        hb.append(f"<p class='warn'>{html.escape(warn)}</p>")
    for ds in summary["datasets"]:
        name = ds["dataset"]
        md.append(f"## {name}\n")
        hb.append(f"<h2>{html.escape(name)}</h2>")
        t = main_table(ds, attacks, len(exp["seeds"]))
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
        figs = [("alpha", plots.alpha_sweep_png(ds, run / f"alpha_sweep_{name}.png"),
                 "Victim accuracy and stolen fidelity against α (α = 0 is QAT)."),
                ("fidelity", plots.fidelity_png(ds, attacks, run / f"fidelity_{name}.png"),
                 "Stolen fidelity per victim and attack (mean ± std over seeds).")]
        for key, png, cap in figs:
            if png is None:
                continue
            paths[f"{key}_{name}"] = png
            md.append(f"![{cap}]({png.name})\n\n{cap}\n")
            b64 = base64.b64encode(png.read_bytes()).decode()
            hb.append(f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{b64}'><figcaption>{html.escape(cap)}</figcaption></figure>")
        ft = footprint_table(ds)
        if ft is not None:
            md.append("### Defence cost on the device\n")
            hb.append("<h3>Defence cost on the device</h3>")
            md.append(ft.markdown())
            hb.append(ft.html())
    t = summary["timing"]
    if t["stages"]:
        line = ("Task time, summed over each stage's tasks: " + "; ".join(
            f"{k}: {v['tasks']} task(s), {v['wall_s_total']:,.0f} s (longest {v['wall_s_max']:,.0f} s)"
            for k, v in t["stages"].items())
            + (f". First start to last finish: {t['span_s'] / 60:.1f} min." if t["span_s"] is not None else "."))
        md.append(f"---\n\n{line}\n")
        hb.append(f"<hr><p>{html.escape(line)}</p>")
    paths["md"] = atomic_write_text(run / "report.md", "\n".join(md))
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(hb) + "\n</body></html>\n")
    paths["html"] = atomic_write_text(run / "report.html", page)
    return paths


_CSS = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}"
        "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}.warn{color:#a00}"
        "figure{margin:1em 0}figcaption{font-size:.9em;color:#555}")


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
                    parts.append(f"{ATTACK_NAMES.get(a, a)} stolen acc. {pct(c['stolen_accuracy']['mean'])}%, fidelity "
                                 f"{pct(c['fidelity']['mean'])}% ({c['budget']:,} queries, {c['fidelity']['n']} seeds)")
            lines.append("; ".join(parts))
        lines += [sentence(c, summary["confidence"]) for c in ds["comparisons"]]
        feet = [f for f in ds["footprint"] if f.get("instructions_per_inference") is not None]
        if feet:
            lines.append(f"Per inference on {feet[0].get('board')} ({feet[0].get('unit')}): " + "; ".join(
                f"{f['label']} {f['instructions_per_inference']:,.0f}" for f in feet) + ".")
    return lines
