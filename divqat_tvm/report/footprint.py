"""Render a measured footprint (the dict `device.measure_footprint` returns) as Markdown and a PNG.

Measures nothing: JSON is the source of truth (`footprint.json`); this module only turns it into pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_markdown(fp: dict[str, Any]) -> str:
    """A Markdown page from footprint JSON; every figure with its unit."""
    lines = [
        f"# Footprint: {fp['model']} on {fp['board']} ({fp['core']})",
        "",
        f"Defence: {fp['defense']}. Flash {fp['flash_bytes']:,} of {fp['flash_capacity_bytes']:,} bytes; "
        f"RAM (static) {fp['ram_bytes']:,} of {fp['ram_capacity_bytes']:,} bytes.",
        "",
        "## Sections (arm-none-eabi-size -A, bytes)",
        "",
        "| section | memory | bytes |",
        "| --- | --- | ---: |",
    ]
    where = {".data": "flash + RAM", ".bss": "RAM", ".stack": "RAM (painted stack region)"}
    lines += [f"| {k} | {where.get(k, 'flash')} | {v:,} |" for k, v in sorted(fp["sections_bytes"].items())]
    lines += ["", "## Flash by part (bytes)", "", "| part | bytes |", "| --- | ---: |"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(fp["flash_by_part_bytes"].items(), key=lambda kv: -kv[1])]
    lines += ["", "## RAM (bytes)", "", "| part | bytes |", "| --- | ---: |"]
    ram = fp.get("ram_used_bytes") or fp["ram_by_part_bytes"]
    lines += [f"| {k} | {v:,} |" for k, v in ram.items()]
    m = fp.get("measured")
    if m:
        u = m["unit"]
        lines += [
            "",
            f"## Per inference ({u})",
            "",
            f"Measured on {m['inputs']} inputs, resolution {m['resolution']:g} {u.split(' ')[0]}.",
            "",
            f"| stage | {u} |",
            "| --- | ---: |",
            f"| model | {m['model_per_inference']['mean']:,.0f} |",
            f"| softmax + defence | {m['postprocess_per_inference']['mean']:,.0f} |",
            f"| total | {m['total_per_inference']:,.0f} |",
            "",
            f"MACs: {fp['macs']:,}; {u.split(' ')[0]} per MAC: "
            + (f"{m['per_mac']:.2f}" if m.get("per_mac") else "n/a")
            + ".",
            f"Peak stack (measured): {m['stack_peak_bytes']:,} bytes.",
        ]
        if m.get("per_operator"):
            lines += [
                "",
                f"## Per operator ({u}, profiling build)",
                "",
                f"| # | operator | kind | MACs | {u} | per MAC |",
                "| ---: | --- | --- | ---: | ---: | ---: |",
            ]
            for r in m["per_operator"]:
                pm = f"{r['per_mac']:.2f}" if r["per_mac"] else ""
                lines.append(f"| {r['index']} | {r['name']} | {r['kind']} | {r['macs']:,} | {r['count']:,.0f} | {pm} |")
            lines.append(
                f"\nSum of operators vs profiled total: {sum(r['count'] for r in m['per_operator']):,.0f} vs "
                f"{m['profiled_total']:,.0f} (hooks and call sequence: {m['profiling_overhead']:,.0f})."
            )
    else:
        lines += ["", fp.get("measured_note", "Not measured.")]
    return "\n".join(lines) + "\n"


def render_png(fp: dict[str, Any], path: Path) -> None:
    """Bars: flash by part, RAM by part, and per-operator counts when measured (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = fp.get("measured") or {}
    ops = m.get("per_operator") or []
    ncols = 3 if ops else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4))
    flash = sorted(fp["flash_by_part_bytes"].items(), key=lambda kv: -kv[1])
    axes[0].barh([k for k, _ in flash], [v for _, v in flash])
    axes[0].set_xlabel("flash (bytes)")
    ram = fp.get("ram_used_bytes") or fp["ram_by_part_bytes"]
    axes[1].barh(list(ram), list(ram.values()))
    axes[1].set_xlabel("RAM (bytes)")
    if ops:
        axes[2].bar(range(len(ops)), [r["count"] for r in ops])
        axes[2].set_xticks(range(len(ops)), [r["name"] for r in ops], rotation=60, ha="right", fontsize=7)
        axes[2].set_ylabel(f"per operator ({m['unit']})")
    fig.suptitle(f"{fp['model']} on {fp['board']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_footprint(fp: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """footprint.json first (atomic), then footprint.md and footprint.png rendered from it."""
    from divqat_tvm.fileio import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "footprint.json", "md": out_dir / "footprint.md", "png": out_dir / "footprint.png"}
    atomic_write_json(paths["json"], fp)
    atomic_write_text(paths["md"], render_markdown(fp))
    render_png(fp, paths["png"])
    return paths
