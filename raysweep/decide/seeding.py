"""Adaptive seeds for an ablation group (`seeds: {min: 3, max: 10, detect: 0.5}`): seeds
are added only to a variant whose verdict is still open, and the family-wise
false-positive rate stays at α by construction.

The design is group-sequential. A variant may be looked at after `min` seeds, then after
about half as many again each time, up to `max` (`SeedPlan.looks`: 3, 5, 8, 10). A look
at n seeds is the paired t-test of the variant against its baseline over their first n
seeds (seeds 0, 1, … n − 1).

Seeding decides on validation top-1, as every decision does. At each look, in order:

- decided (from the second look on): the variant's sequential p (below) on validation
  top-1 is ≤ α/m (m: the group's variants); it runs no more seeds. Not at the first
  look: with `min` seeds a validation spread small by chance decides variants the test
  split then cannot confirm (37% of them at Δ = 7 × the seed spread, in the
  simulation); one look later it confirms all;
- detect reached: the interval of Δ at level 1 − α/m lies inside ±`detect`: no
  difference as large as `detect` is left to find;
- reached max: n = max;
- otherwise it runs to the next look, and its baseline runs the most seeds any of its
  open variants needs (every test stays paired).

The verdict is on test top-1: the sequential p over the looks the variant's seeding
took, what Holm's correction over the group is applied to. With p_n the paired test's p
at a look of n seeds, S = min_k p_{n_k}/w_{n_k} over its looks (w = 1 at max seeds,
EARLY_WEIGHT before: an early look declares only a clear effect), and its sequential p
is P(S' ≤ S), S' the same statistic over *every* possible look of seeds that differ by
noise alone. A variant looked at fewer times has S ≥ S' on the same seeds, so
P(p ≤ u) ≤ u whatever made its seeding stop where it did: the rule may read any split,
spread or Δ without adding false positives, and Holm keeps the family-wise rate at α.
P(S' ≤ s) is free of the seeds' spread (a t statistic is scale-free), so it is computed
once per plan by simulation: NULL_DRAWS sequences of normal differences from a fixed
generator seed (so a report rebuilds the same), which give the null CDF to within about
±√(u/NULL_DRAWS), 2% of the value at u = α/m; the +1 of a Monte-Carlo p value leans it
to the safe side.

Earlier drafts, measured by the calibration and dropped: deciding the seed count from
the validation spread in one step and testing at the chosen count (an unblinded internal
pilot: 7.6–8.3% family-wise at α = 5%, since a pilot whose spread is small by chance
stops with a test that over-rejects); the same blinded to Δ's sign (valid, but a large
Δ then asked for more seeds, never fewer); stopping when the 95% interval, or the
detectable Δ, came under `detect` (3 pilot seeds misjudge the spread often enough to
stop true effects early); jumping from a look straight to the seeds the spread asks for
(clear effects then ran to max before a look could decide them).

`raysweep calibrate` measures the family-wise rate, the power and the seeds of the whole
procedure (benchmarks/README.md, "Calibration"). A seed added later is the same trial it
would have been had it run first: a trial's key holds its seed, not when it ran.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from raysweep.decide import stats as st
from raysweep.study.sections import SeedPlan

EARLY_WEIGHT = 0.1      # w of a look before max seeds (1 at max)
NULL_DRAWS = 100_000    # simulated sequences behind the sequential p
NULL_SEED = 20261208

# Why a variant's seeding ended (the ablation table's "seeding" column).
DECIDED = "decided"                 # validation's sequential p ≤ α/m (after the first look)
DETECT_REACHED = "detect reached"   # Δ's interval lies inside ±detect (validation)
REACHED_MAX = "reached max"         # max seeds without either
NOT_TESTED = "not tested"           # no paired test (fewer than 2 seeds, no spread)
ENDED_EARLY = "seeds ended early"   # a look's seed ended before its budget (ASHA by arm
                                    # stopped the arm, it diverged or errored): no more
                                    # seeds for it


@dataclass(frozen=True)
class Path:
    """A variant's looks so far, replayed from its recorded seeds (`seeding_path`)."""
    looks: list[int]            # seed counts it was looked at
    seeds: int                  # seeds it needs (its last look's count when stopped)
    why: str | None             # why seeding stopped; None while seeds are still to run


def first(values: dict[int, float], n: int, plan: SeedPlan) -> dict[int, float]:
    """The plan's first n seeds of `{seed: value}`."""
    keep = set(plan.seeds[:n])
    return {s: v for s, v in values.items() if s in keep}


def weight(n: int, plan: SeedPlan) -> float:
    return 1.0 if n >= plan.max else EARLY_WEIGHT


def seeding_path(variant_val: dict[int, float], base_val: dict[int, float], m: int,
                 plan: SeedPlan, ended: frozenset[int] = frozenset()) -> Path:
    """Replay the seeding rule (module docstring) on the recorded validation top-1 of a
    variant and its baseline (full-budget seeds only): the looks taken, the seeds
    needed, and why it stopped. `ended`: seeds of either side that ended without a
    full-budget result; a look that needs one cannot be taken, ever."""
    n, looks, tests = plan.min, [], []
    while True:
        v, b = first(variant_val, n, plan), first(base_val, n, plan)
        if len(set(v) & set(b)) < n:
            lost = set(plan.seeds[:n]) & ended
            return Path(looks, n, ENDED_EARLY if lost else None)
        test = st.compare(v, b)
        looks.append(n)
        tests.append(test)
        if not test.tested:
            return Path(looks, n, NOT_TESTED)
        if n > plan.min and sequential_p(dict(zip(looks, (t.p for t in tests))), plan) \
                <= st.ALPHA / m:
            return Path(looks, n, DECIDED)
        if within_detect(test, m, plan):
            return Path(looks, n, DETECT_REACHED)
        if n >= plan.max:
            return Path(looks, n, REACHED_MAX)
        n = next(k for k in plan.looks if k > n)


def within_detect(test: st.Comparison, m: int, plan: SeedPlan) -> bool:
    """Whether the test's interval of Δ at level 1 − α/m (Holm's strictest) lies inside
    ±detect: no Δ as large as `detect` is left to find."""
    half = float(special.stdtrit(test.df, 1 - st.ALPHA / (2 * m))) * test.se
    return abs(test.delta) + half < plan.detect


def verdict_p(variant_test: dict[int, float], base_test: dict[int, float], looks: list[int],
              plan: SeedPlan) -> float:
    """The variant's sequential p on test top-1 over the looks its seeding took; a look
    whose n seeds do not all hold a test result on both sides is left out (fewer looks
    can only raise p); NaN when none is left."""
    p = {}
    for n in looks:
        v, b = first(variant_test, n, plan), first(base_test, n, plan)
        if len(set(v) & set(b)) == n:
            p[n] = st.compare(v, b).p
    return sequential_p(p, plan)


def sequential_p(p_by_look: dict[int, float], plan: SeedPlan) -> float:
    """P(S' ≤ S) for the looks' p values (module docstring); NaN without a test."""
    found = [p / weight(n, plan) for n, p in p_by_look.items() if not math.isnan(p)]
    if not found:
        return st.NAN
    null = _null_statistics(tuple(plan.looks))
    return float((np.searchsorted(null, min(found), side="right") + 1) / (len(null) + 1))


@functools.lru_cache(maxsize=16)
def _null_statistics(looks: tuple[int, ...]) -> np.ndarray:
    """S' of NULL_DRAWS sequences of normal differences looked at every count in `looks`,
    sorted."""
    d = np.random.default_rng(NULL_SEED).standard_normal((NULL_DRAWS, looks[-1]))
    n = np.array(looks)
    total, squares = np.cumsum(d, axis=1)[:, n - 1], np.cumsum(d * d, axis=1)[:, n - 1]
    mean = total / n
    sd = np.sqrt(np.maximum(squares - n * mean ** 2, 0) / (n - 1))
    p = 2 * special.stdtr(n - 1, -np.abs(mean / (sd / np.sqrt(n))))
    weights = np.where(n >= looks[-1], 1.0, EARLY_WEIGHT)
    return np.sort((p / weights).min(axis=1))


# --- a run's records → the seeds each arm needs ---

def seeds_wanted(records: list, plan: SeedPlan) -> dict[str, int]:
    """{arm_key: seeds} for every arm of the run's ablation groups (grid `TrialRecord`s),
    replaying each variant's looks from its recorded seeds: a variant the seeds its path
    needs, a baseline the most any of its variants needs. An arm in several groups gets
    the most any group asks."""
    wanted: dict[str, int] = {}
    for base, variants in groups(records).values():
        base_val = full_budget_values(base)
        needs = [seeding_path(full_budget_values(v), base_val, len(variants), plan,
                              ended_early(base + v)).seeds for v in variants.values()]
        for key, n in [*zip(variants, needs), (base[0].arm_key, max(needs, default=plan.min))]:
            wanted[key] = max(wanted.get(key, 0), n)
    return wanted


def groups(records: list) -> dict[str, tuple[list, dict[str, list]]]:
    """{group: (baseline's records, {variant arm_key: records})} of the groups with one
    baseline config (a group without one compares nothing: its table says why)."""
    arms: dict[str, dict[str, list]] = {}
    baselines: dict[str, set[str]] = {}
    for r in records:
        for label in {x for x in r.labels if x.group is not None} if r.sample is None else ():
            arms.setdefault(label.group, {}).setdefault(r.arm_key, []).append(r)
            if label.baseline:
                baselines.setdefault(label.group, set()).add(r.arm_key)
    out = {}
    for group, by_arm in arms.items():
        if len(baselines.get(group, ())) == 1:
            [base] = baselines[group]
            out[group] = (by_arm[base], {k: v for k, v in by_arm.items() if k != base})
    return out


def ended_early(records: list) -> frozenset[int]:
    """Seeds whose trial ended for good short of a full-budget result: stopped by ASHA,
    diverged, errored (an interrupted one resumes; a running one may still finish)."""
    return frozenset(r.seed for r in records if r.status in ("stopped", "diverged", "errored")
                     or (r.status == "completed" and r.last_epoch != r.epochs))


def full_budget_values(records: list, metric: str = "val_top1") -> dict[int, float]:
    """{seed: metric at the last epoch} of the seeds that trained their whole budget."""
    out = {}
    for r in records:
        if r.status == "completed" and r.history and r.last_epoch == r.epochs:
            value = getattr(r.history[-1], metric)
            if value is not None and math.isfinite(value):
                out[r.seed] = value
    return out
