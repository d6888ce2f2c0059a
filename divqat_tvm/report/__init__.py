"""Reports rendered from JSON: the paper-style table, paired DivQAT-vs-QAT comparisons, α sweeps, defence costs.

Public API: `render_report(run_dir) -> {name: path}` (report.json, report.md, report.html, PNGs),
`summarize_run(run_dir) -> dict` (the summary the renderers print), `headline(run_dir) -> [str]`.
`footprint.py` (instructions per inference, flash, RAM on the device) belongs to the firmware stage.
"""

from divqat_tvm.report.render import headline, render_report
from divqat_tvm.report.results import summarize_run

__all__ = ["headline", "render_report", "summarize_run"]
