"""The statistics a report states: mean ± std over seeds, and paired t-intervals on per-seed differences.

Attack seeds are the paired unit: seed s draws the same surrogate sample and initialisation against both
victims, so DivQAT − QAT per seed cancels most of the seed-to-seed spread that the notes measured at
4–9 points. The interval is the Student t-interval on the mean paired difference; a verdict says
"lowered" or "raised" only when the whole interval lies on one side of zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as sps


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and the values themselves."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± sample std of a list of per-seed figures."""
    v = [float(x) for x in values]
    if not v:
        return Summary(math.nan, math.nan, 0, ())
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return Summary(m, sd, len(v), tuple(v))


@dataclass(frozen=True)
class PairedDiff:
    """The mean of per-seed differences (treatment − control) with its t-interval.

    Attributes:
        mean: mean difference.
        low, high: the confidence interval (NaN when n < 2).
        n: number of paired seeds.
        confidence: e.g. 0.95.
        diffs: the per-seed differences, in seed order.
        seeds: the seeds paired.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    diffs: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def verdict(self) -> str:
        """"lowered", "raised", "within noise" or "one seed" (no interval with a single pair)."""
        if self.n < 2:
            return "one seed"
        if self.high < 0:
            return "lowered"
        if self.low > 0:
            return "raised"
        return "within noise"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["diffs"], d["seeds"], d["verdict"] = list(self.diffs), list(self.seeds), self.verdict
        return d


def paired_difference(treatment: dict[int, float], control: dict[int, float], confidence: float = 0.95) -> PairedDiff:
    """Paired t-interval over the seeds both sides have.

    Args:
        treatment: seed → figure (e.g. stolen fidelity against DivQAT).
        control: seed → figure (e.g. against QAT).
        confidence: two-sided confidence level.

    Returns:
        The mean difference treatment − control and its interval mean ± t_{(1+c)/2, n−1} · s / √n.
    """
    seeds = tuple(sorted(set(treatment) & set(control)))
    diffs = tuple(float(treatment[s]) - float(control[s]) for s in seeds)
    n = len(diffs)
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, confidence, (), ())
    s = summarize(diffs)
    if n < 2:
        return PairedDiff(s.mean, math.nan, math.nan, n, confidence, diffs, seeds)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * s.std / math.sqrt(n)
    return PairedDiff(s.mean, s.mean - half, s.mean + half, n, confidence, diffs, seeds)
