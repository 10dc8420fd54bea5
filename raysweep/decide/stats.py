"""Statistics of per-seed results: mean ± std, a variant against its baseline, Holm's
correction and the smallest difference a comparison could have detected.

Inputs are per-seed values, `{seed: accuracy in %}`. Every arm of a study trains each
seed with the same data order and augmentation draws, so a variant and its baseline are
compared seed by seed (a paired t-test on the differences); Welch's t-test is the
fallback when fewer than two seeds are shared. results/README.md works an example.

The t and noncentral t distributions come from `scipy.special` (what `scipy.stats`
computes them with), not from `scipy.stats`, whose import alone takes ~1.4 s: `compare`
answers in under a second. tests/results/test_results.py checks every figure against
`scipy.stats` (ttest_rel, ttest_ind, t, nct).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

NAN = float("nan")
ALPHA = 0.05    # two-sided significance level of every test, family-wise within a group (Holm)
POWER = 0.80    # probability of detecting the "detectable Δ" (see `detectable_delta`)
CONFIDENCE = 0.95   # of the Δ interval (per comparison, not adjusted for multiplicity)

# A spread below this (in points of accuracy) is rounding noise: the seeds agree exactly.
_NO_SPREAD = 1e-9


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n); std is NaN below 2 values, mean NaN at 0."""
    n = len(values)
    mean = float(np.mean(values)) if n else NAN
    std = float(np.std(values, ddof=1)) if n >= 2 else NAN
    return mean, std, n


@dataclass(frozen=True)
class Comparison:
    """A variant's per-seed values against its baseline's (Δ = variant − baseline, points)."""
    test: str           # "paired t" | "Welch t" | "" (not tested)
    n_pairs: int        # seeds both sides share (the paired test's n); 0 for Welch
    delta: float        # mean of the per-seed differences (paired), else difference of means
    se: float           # standard error of delta
    df: float           # degrees of freedom of the t distribution
    ci_low: float       # CONFIDENCE interval of delta
    ci_high: float
    p: float            # two-sided p value, before Holm
    untested: str = ""  # why there is no test ("" when there is one)

    @property
    def tested(self) -> bool:
        return not self.untested


def compare(variant: dict[int, float], baseline: dict[int, float]) -> Comparison:
    """Paired t-test over the seeds both sides share when there are at least two of them;
    Welch's t-test when fewer are shared and each side has two seeds or more."""
    shared = sorted(set(variant) & set(baseline))
    if len(shared) >= 2:
        v, b = [variant[s] for s in shared], [baseline[s] for s in shared]
        diffs = np.subtract(v, b)
        delta, se = float(np.mean(diffs)), float(np.std(diffs, ddof=1) / math.sqrt(len(diffs)))
        if se <= _NO_SPREAD:
            return not_tested(delta, "every seed gave the same Δ", "paired t", len(shared))
        return _tested("paired t", len(shared), delta, se, len(shared) - 1)
    return welch(list(variant.values()), list(baseline.values()))


def welch(v: list[float], b: list[float]) -> Comparison:
    """Welch's t-test of `v` against `b` (unpaired; Δ = mean(v) − mean(b))."""
    delta = float(np.mean(v) - np.mean(b)) if v and b else NAN
    if min(len(v), len(b)) < 2:
        why = "a side has no seed" if not (v and b) else "a side has 1 seed"
        return not_tested(delta, why)
    va, vb = np.var(v, ddof=1) / len(v), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se <= _NO_SPREAD:
        return not_tested(delta, "no spread between seeds", "Welch t")
    # Welch–Satterthwaite degrees of freedom
    df = (va + vb) ** 2 / (va ** 2 / (len(v) - 1) + vb ** 2 / (len(b) - 1))
    return _tested("Welch t", 0, delta, se, float(df))


def _tested(test: str, n_pairs: int, delta: float, se: float, df: float) -> Comparison:
    """The t-test of Δ̂/se on `df` degrees of freedom: two-sided p and the CONFIDENCE
    interval of Δ."""
    half = float(special.stdtrit(df, 1 - (1 - CONFIDENCE) / 2)) * se
    p = 2 * float(special.stdtr(df, -abs(delta / se)))
    return Comparison(test, n_pairs, delta, se, float(df), delta - half, delta + half, p)


def not_tested(delta: float, why: str, test: str = "", n_pairs: int = 0) -> Comparison:
    return Comparison(test, n_pairs, delta, NAN, NAN, NAN, NAN, NAN, untested=why)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p values, in the input order; NaN (no test) stays NaN and
    does not count in the family size m."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, adjusted, running = len(tested), [NAN] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def detectable_delta(comparison: Comparison, m: int) -> float:
    """The smallest |Δ| this comparison detects with probability POWER at the observed
    spread: Δ = λ × se, where λ is the noncentrality at which the two-sided t-test at
    level α/m (df as in the test) rejects with probability POWER: the statistic Δ̂/se
    follows the noncentral t with df degrees of freedom and noncentrality Δ/se. (The
    normal shortcut (t_{1−α/(2m)} + t_{POWER}) × se falls short of POWER at small df:
    72% at df = 2, m = 3.) α/m is the strictest threshold Holm can put on one of m tests,
    so any |Δ| this large is detected whatever the other tests of the group show."""
    if not comparison.tested or m < 1:
        return NAN
    return noncentrality(comparison.df, ALPHA / m) * comparison.se


@functools.lru_cache(maxsize=4096)
def noncentrality(df: float, level: float) -> float:
    """λ at which a two-sided t-test at `level` on `df` degrees of freedom rejects with
    probability POWER (bisection: the power rises with λ). Cached: the adaptive-seed plan
    asks it for every seed count it considers."""
    crit = float(special.stdtrit(df, 1 - level / 2))
    shortcut = crit + float(special.stdtrit(df, POWER))   # below the answer: a low end
    low, high = shortcut / 2, shortcut
    while power(high, crit, df) < POWER:
        low, high = high, high * 2
    while high - low > 1e-12 * max(1.0, high):
        mid = (low + high) / 2
        low, high = (mid, high) if power(mid, crit, df) < POWER else (low, mid)
    return float((low + high) / 2)


def power(noncentrality: float, crit: float, df: float) -> float:
    """Probability that a two-sided t-test with critical value `crit` rejects when its
    statistic follows the noncentral t(df, noncentrality)."""
    # The far tail is below 1e-9 wherever the power is near POWER; scipy returns NaN for
    # it at large noncentralities, where it is 0 for all purposes.
    far = float(special.nctdtr(df, noncentrality, -crit))
    near = 1.0 - float(special.nctdtr(df, noncentrality, crit))
    return near + (0.0 if math.isnan(far) else far)


def verdict(comparison: Comparison, p_holm: float, detectable: float) -> str:
    """What the test says, no more: a non-significant test does not show that there is no
    difference, only that a difference smaller than `detectable` could not be seen."""
    if not comparison.tested:
        return f"not tested: {comparison.untested}"
    if p_holm < ALPHA:
        return f"significant at α = {ALPHA:g} after Holm"
    return f"not significant at α = {ALPHA:g} after Holm; could detect |Δ| ≥ {detectable:.2f}"


def beat_probability(diffs: list[float], resamples: int = 2_000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """(estimate, low, high): the probability that the variant beats the baseline on a new
    seed, Φ(mean/std) of the per-seed differences (a normal model of a new seed's Δ), with
    a percentile bootstrap interval (CONFIDENCE) over the seeds. NaN below 2 seeds. The
    bootstrap's generator is seeded: a report rebuilt from the same records is the same."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return NAN, NAN, NAN
    draws = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    estimates = _phi_of_ratio(d[None, :]), _phi_of_ratio(d[draws])
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(estimates[1], [tail, 100 - tail])
    return float(estimates[0][0]), float(low), float(high)


def _phi_of_ratio(d: np.ndarray) -> np.ndarray:
    """Φ(mean/std) per row; a row without spread is 1, 0 or ½ by the sign of its mean."""
    mean, std = d.mean(axis=1), d.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > _NO_SPREAD, mean / np.where(std > _NO_SPREAD, std, 1.0),
                     np.sign(mean) * np.inf)
    return np.where(np.isnan(z), 0.5, special.ndtr(z))
