"""The statistics a report states: mean ± std over seeds, and paired t-intervals on per-seed differences.

Attack seeds are the paired unit: seed s draws the same surrogate sample and initialisation against both
victims, so DivQAT − QAT per seed cancels most of the seed-to-seed spread that the notes measured at
4–9 points. The interval is the Student t-interval on the mean paired difference; a verdict says
"lowered" or "raised" only when the whole interval lies on one side of zero.

With several victim seeds (`compare`), the unit becomes the victim seed, and a report's comparisons form one
family whose intervals are Holm-corrected (`holm_levels`, `corrected`): a verdict then says "lowered" or
"raised" only when the corrected interval excludes zero.
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
        """ "lowered", "raised", "within noise" or "one seed" (no interval with a single pair)."""
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


# ---------------------------------------------------------------- victim seeds and multiple comparisons


@dataclass(frozen=True)
class Comparison:
    """A treatment − control difference over (victim seed, attack seed) pairs, with its test and interval.

    With one victim seed the unit is the attack seed: a paired t-interval over seeds (df = n − 1). With several
    victim seeds, victims trained from different seeds differ in how much DivQAT changes them, so the attack
    seeds of one victim are not independent replicates of the effect: the unit is the victim seed (the mean of
    its paired differences over attack seeds), and the interval is a t-interval over victim seeds
    (df = victims − 1) — the exact interval of a balanced two-level model with a random victim effect.

    Attributes:
        mean: mean difference (mean over victim seeds of the mean over attack seeds).
        se: its standard error; df: degrees of freedom of the t-interval.
        p_value: two-sided, from the t statistic mean / se.
        unit: "attack seed" or "victim seed".
        n: number of (victim seed, attack seed) pairs; n_victims, n_seeds: distinct seeds of each kind.
        sd: standard deviation of the per-pair differences (the scale of the standardised effect size).
        diffs: per-pair differences, keyed "v<victim seed>/s<attack seed>".
    """

    mean: float
    se: float
    df: int
    p_value: float
    unit: str
    n: int
    n_victims: int
    n_seeds: int
    sd: float
    diffs: dict[str, float]

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided t-interval at `confidence` (NaN without a degree of freedom)."""
        if self.df < 1 or math.isnan(self.se):
            return math.nan, math.nan
        half = float(sps.t.ppf(1 - (1 - confidence) / 2, self.df)) * self.se
        return self.mean - half, self.mean + half


def compare(treatment: dict[tuple[int, int], float], control: dict[tuple[int, int], float]) -> Comparison:
    """The difference treatment − control over the (victim seed, attack seed) pairs both sides have."""
    keys = sorted(set(treatment) & set(control))
    diffs = {k: float(treatment[k]) - float(control[k]) for k in keys}
    n = len(diffs)
    victims = sorted({k[0] for k in keys})
    sd = summarize(list(diffs.values())).std if n else math.nan
    if len(victims) >= 2:
        units = [sum(d for k, d in diffs.items() if k[0] == v) / sum(1 for k in diffs if k[0] == v) for v in victims]
        unit = "victim seed"
    else:
        units = list(diffs.values())
        unit = "attack seed"
    s = summarize(units)
    df = len(units) - 1
    se = s.std / math.sqrt(len(units)) if len(units) >= 2 else math.nan
    if df < 1:
        p = math.nan
    elif se == 0:
        p = 1.0 if s.mean == 0 else 0.0
    else:
        p = float(2 * sps.t.sf(abs(s.mean / se), df))
    return Comparison(
        s.mean if units else math.nan,
        se,
        df,
        p,
        unit,
        n,
        len(victims),
        len({k[1] for k in keys}),
        sd,
        {f"v{k[0]}/s{k[1]}": d for k, d in diffs.items()},
    )


def holm_levels(p_values: list[float], alpha: float = 0.05) -> tuple[list[float], list[float], list[bool]]:
    """Holm's step-down procedure over a family: adjusted p-values, per-hypothesis interval levels, rejections.

    Sort the p-values; the j-th smallest (0-based) is tested at α / (m − j) until the first that fails, and every
    later one is then tested at that failing level. Intervals at confidence 1 − (that level) are "Holm-corrected":
    one excludes zero exactly when Holm rejects (a later hypothesis' p is at least the failing one's, so its
    interval at the failing level contains zero). NaN p-values (no interval) are left out of the family.

    Returns:
        (adjusted p-values, per-hypothesis significance levels, rejected flags), in the input order.
    """
    m_idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(m_idx)
    order = sorted(m_idx, key=lambda i: p_values[i])
    adj = [math.nan] * len(p_values)
    level = [math.nan] * len(p_values)
    rejected = [False] * len(p_values)
    running = 0.0
    failed_at: float | None = None
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p_values[i]))
        adj[i] = running
        lvl = alpha / (m - j) if failed_at is None else failed_at
        if failed_at is None and p_values[i] > lvl:
            failed_at = lvl
        level[i] = lvl
        rejected[i] = failed_at is None
    return adj, level, rejected


def corrected(comps: list[Comparison], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Each comparison with Holm-corrected interval, adjusted p-value, verdict and standardised effect size.

    The verdict is "lowered" / "raised" only when the corrected interval excludes zero (Holm rejects); "within
    noise" otherwise; "one seed" when there is no interval. The effect size d = mean / sd (sd of the per-pair
    differences) comes with the corrected interval divided by the same sd (sd taken as fixed).
    """
    alpha = 1 - confidence
    adj, level, rej = holm_levels([c.p_value for c in comps], alpha)
    out = []
    for c, pa, lv, r in zip(comps, adj, level, rej):
        low, high = c.interval(1 - lv) if not math.isnan(lv) else (math.nan, math.nan)
        raw_low, raw_high = c.interval(confidence)
        if c.n == 0 or math.isnan(low):
            verdict = "one seed" if c.n else "no data"
        elif r and high < 0:
            verdict = "lowered"
        elif r and low > 0:
            verdict = "raised"
        else:
            verdict = "within noise"
        d = c.mean / c.sd if c.sd and not math.isnan(c.sd) else math.nan
        dl, dh = (low / c.sd, high / c.sd) if c.sd and not math.isnan(c.sd) else (math.nan, math.nan)
        out.append(
            {
                "mean": c.mean,
                "low": low,
                "high": high,
                "level": lv,
                "raw_low": raw_low,
                "raw_high": raw_high,
                "p_value": c.p_value,
                "p_holm": pa,
                "verdict": verdict,
                "n": c.n,
                "n_victims": c.n_victims,
                "n_seeds": c.n_seeds,
                "unit": c.unit,
                "df": c.df,
                "se": c.se,
                "sd": c.sd,
                "effect_size": d,
                "effect_low": dl,
                "effect_high": dh,
                "confidence": confidence,
                "family_size": sum(1 for x in comps if not math.isnan(x.p_value)),
                "diffs": c.diffs,
            }
        )
    return out
