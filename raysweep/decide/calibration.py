"""Calibration: the whole decision procedure run on simulated seeds whose truth is known,
so its error rates are measured, not assumed (`raysweep calibrate`; the tables are in
benchmarks/README.md, "Calibration").

Per-seed accuracies are drawn with known arm means and seed noise: a variant's test and
validation top-1 on seed s are its mean plus normal noise of its own, so the paired
difference of a variant and its baseline has standard deviation `sd_diff` on the test
split and VAL_SPREAD × `sd_diff` on the validation split, the two correlated by RHO. The
defaults come from the committed Fashion-MNIST study (results/fashion_mnist/records/, 28
pairs of arms, 3 seeds): SD_DIFF is the median over the pairs of the standard deviation
of their per-seed differences in test top-1; RHO and VAL_SPREAD the correlation and the
ratio of spreads of the per-seed differences (about each pair's mean) between the
validation and test splits.

Two simulations, each through the functions the engine and the tables decide with (the
A/A and power tables both come from the first):

- `designs`: ablation groups of a baseline and `variants` variants decided by the
  adaptive-seed plan (`raysweep.decide.seeding`: its looks on validation top-1, the
  sequential p of test top-1, Holm) and, for comparison, by the same paired tests and
  Holm over a fixed `max` seeds.
- `asha_survival`: arms with saturating validation curves, ASHA at the rungs
  (`raysweep.decide.rungs.Rungs`) judging trials one seed at a time (`by: trial`) or arms
  on the mean of their seeds (`by: arm`): how often the truly best arm reaches the full
  budget with every seed, and the epochs each mode trained.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from raysweep.decide import rungs as rg
from raysweep.decide import seeding as sd
from raysweep.decide import stats as st

SD_DIFF = 0.72      # points: std of per-seed Δ test top-1, committed Fashion-MNIST records
RHO = 0.70          # correlation of a seed's Δ on the validation and test splits (same)
VAL_SPREAD = 1.5    # std of per-seed Δ, validation over test (417 vs 2,000 images there)
GROUPS = 10_000     # simulated groups per row (the A/A bound is checked at this size)


@dataclass(frozen=True)
class GroupResult:
    """One simulated ablation group decided by one design."""
    significant: list[bool]     # per variant: declared different from the baseline
    seeds: list[int]            # per variant: seeds it ran
    trials: int                 # trials the group ran (baseline's seeds included)


@dataclass(frozen=True)
class DesignRow:
    """A design's outcome over many groups with the same true Δs."""
    design: str
    groups: int
    family_wise: float          # share of groups with at least one false "significant"
    declared: float             # share of truly different variants declared
    seeds_per_variant: float
    trials_per_group: float

    @property
    def family_wise_se(self) -> float:
        """Monte-Carlo standard error of `family_wise`."""
        p = self.family_wise
        return math.sqrt(max(p * (1 - p), 1e-12) / self.groups)


@dataclass(frozen=True)
class Arm:
    """One simulated arm's {seed: top-1} on each split."""
    val: dict[int, float]
    test: dict[int, float]


def draw_group(rng: np.random.Generator, deltas: list[float], seeds: int, sd_diff: float
               ) -> tuple[Arm, list[Arm]]:
    """The baseline and one variant per true Δ, seeds 0..seeds−1. Each arm's own noise has
    std sd_diff/√2 on the test split, so a paired difference has std sd_diff."""
    noise = sd_diff / math.sqrt(2)

    def arm(mean: float) -> Arm:
        test = rng.normal(0, noise, seeds)
        own = rng.normal(0, noise, seeds)
        val = VAL_SPREAD * (RHO * test + math.sqrt(1 - RHO ** 2) * own)
        return Arm(dict(enumerate((mean + val).tolist())), dict(enumerate((mean + test).tolist())))

    return arm(80.0), [arm(80.0 + d) for d in deltas]


def adaptive_group(base: Arm, variants: list[Arm], plan: sd.SeedPlan) -> GroupResult:
    """The adaptive-seed design of `raysweep.decide.seeding` on seeds that are all drawn
    (seeds beyond what the design runs are never looked at): each variant's looks on
    validation top-1, its verdict on test top-1, Holm over the group."""
    m = len(variants)
    paths = [sd.seeding_path(v.val, base.val, m, plan) for v in variants]
    p = [sd.verdict_p(v.test, base.test, path.looks, plan) for v, path in zip(variants, paths)]
    needs = [path.seeds for path in paths]
    return GroupResult([q < st.ALPHA for q in st.holm(p)], needs, max(needs) + sum(needs))


def fixed_group(base: Arm, variants: list[Arm], seeds: int) -> GroupResult:
    """Every arm runs `seeds` seeds; paired t-tests of test top-1 and Holm (a fixed design)."""
    first = lambda values: {s: values[s] for s in range(seeds)}   # noqa: E731
    p = [st.compare(first(v.test), first(base.test)).p for v in variants]
    return GroupResult([q < st.ALPHA for q in st.holm(p)], [seeds] * len(variants),
                       seeds * (len(variants) + 1))


def designs(deltas: list[float], plan: sd.SeedPlan, groups: int = GROUPS,
            sd_diff: float = SD_DIFF, seed: int = 0) -> list[DesignRow]:
    """The adaptive design and the fixed `max`-seed design on the same simulated groups."""
    rng = np.random.default_rng(seed)
    outcomes: dict[str, list[GroupResult]] = {"adaptive": [], f"fixed {plan.max} seeds": []}
    for _ in range(groups):
        base, variants = draw_group(rng, deltas, plan.max, sd_diff)
        outcomes["adaptive"].append(adaptive_group(base, variants, plan))
        outcomes[f"fixed {plan.max} seeds"].append(fixed_group(base, variants, plan.max))
    return [_row(name, found, deltas) for name, found in outcomes.items()]


def _row(design: str, found: list[GroupResult], deltas: list[float]) -> DesignRow:
    null = [i for i, d in enumerate(deltas) if d == 0]
    real = [i for i, d in enumerate(deltas) if d != 0]
    false = [any(g.significant[i] for i in null) for g in found]
    declared = [g.significant[i] for g in found for i in real]
    return DesignRow(design, len(found), float(np.mean(false)) if null else st.NAN,
                     float(np.mean(declared)) if real else st.NAN,
                     float(np.mean([np.mean(g.seeds) for g in found])),
                     float(np.mean([g.trials for g in found])))


# --- ASHA: does the truly best arm survive? ---

@dataclass(frozen=True)
class AshaRow:
    mode: str                   # "by: trial" | "by: arm"
    grace_period: int
    studies: int
    best_full: float            # share of studies whose best arm trained every seed in full
    best_any: float             # ... at least one seed in full
    epochs: float               # epochs trained per study, all trials together


def curve(mean: float, epochs: int) -> np.ndarray:
    """A saturating validation curve ending at `mean`: the gap to it halves every 2
    epochs from 30 points at epoch 1."""
    e = np.arange(1, epochs + 1)
    return mean - 30 * 0.5 ** ((e - 1) / 2)


def asha_survival(studies: int = 2_000, arms: int = 8, seeds: int = 3, epochs: int = 16,
                  grace_period: int = 2, reduction_factor: float = 2, gap: float = 0.5,
                  sd_seed: float = SD_DIFF / math.sqrt(2), sd_epoch: float = 0.5,
                  seed: int = 0) -> list[AshaRow]:
    """`arms` arms whose final means are `gap` points apart (arm 0 is the best); each
    seed has a persistent offset (std sd_seed) and each epoch's validation result its own
    noise (std sd_epoch). Results reach each rung in a random order, as an asynchronous
    cluster delivers them."""
    rng = np.random.default_rng(seed)
    order = random.Random(seed)
    rungs_at = rg.milestones(epochs, grace_period, reduction_factor)
    rows = {"by: trial": [], "by: arm": []}
    for _ in range(studies):
        val = np.array([[curve(80 - gap * a, epochs) + rng.normal(0, sd_seed)
                         + rng.normal(0, sd_epoch, epochs) for _ in range(seeds)]
                        for a in range(arms)])          # [arm, seed, epoch]
        for mode in rows:
            rows[mode].append(_run_asha(mode, val, rungs_at, reduction_factor, order))
    return [AshaRow(mode, grace_period, studies, float(np.mean([r[0] for r in found])),
                    float(np.mean([r[1] for r in found])), float(np.mean([r[2] for r in found])))
            for mode, found in rows.items()]


def _run_asha(mode: str, val: np.ndarray, rungs_at: list[float], eta: float,
              order: random.Random) -> tuple[bool, bool, int]:
    arms, seeds, epochs = val.shape
    rungs = rg.Rungs(rungs_at, eta)
    ended = np.full((arms, seeds), epochs)      # the epoch each trial ends at
    if mode == "by: trial":
        units = {f"{a}/{s}": [(a, s)] for a in range(arms) for s in range(seeds)}
    else:
        units = {str(a): [(a, s) for s in range(seeds)] for a in range(arms)}
    alive = list(units)
    for milestone in rungs_at:
        e = rg.rung_epoch(milestone)
        order.shuffle(alive)
        for unit in list(alive):
            value = float(np.mean([val[a, s, e - 1] for a, s in units[unit]]))
            if rungs.judge(unit, milestone, value) == rg.STOP:
                alive.remove(unit)
                for a, s in units[unit]:
                    ended[a, s] = e
    best = ended[0] == epochs
    return bool(best.all()), bool(best.any()), int(ended.sum())


# --- printing ---

def tables(plan: sd.SeedPlan, variants: int = 3, groups: int = GROUPS,
           sd_diff: float = SD_DIFF, hours_per_trial: float = 1.0, seed: int = 0) -> str:
    """The three calibration tables as Markdown (what `raysweep calibrate` prints)."""
    lines = [f"Calibration: {groups:,} simulated groups per row, a baseline and {variants} "
             f"variants, seeds: {{min: {plan.min}, max: {plan.max}, detect: {plan.detect:g}}} "
             f"(looks at {', '.join(map(str, plan.looks))} seeds), std of per-seed Δ "
             f"{sd_diff:g} points on test top-1 (× {VAL_SPREAD:g} on validation, "
             f"correlation {RHO:g}), α = {st.ALPHA:g} (Holm), seed {seed}.",
             "", "A/A (no true difference): family-wise false-positive rate", "",
             "| design | groups | family-wise rate | ± MC s.e. | bound (α + 2 s.e.) | seeds/variant | trials/group |",
             "|---|---|---|---|---|---|---|"]
    for row in designs([0.0] * variants, plan, groups, sd_diff, seed):
        bound = st.ALPHA + 2 * math.sqrt(st.ALPHA * (1 - st.ALPHA) / groups)
        lines.append(f"| {row.design} | {row.groups:,} | {row.family_wise:.2%} | "
                     f"{row.family_wise_se:.2%} | {bound:.2%} | {row.seeds_per_variant:.2f} | "
                     f"{row.trials_per_group:.2f} |")
    lines += ["", f"Power: the variants' true Δ in points (k × detect); share of the "
              f"variants with Δ ≠ 0 declared, false positives among those with Δ = 0, and "
              f"GPU-hours per group at {hours_per_trial:g} GPU-hour(s) per trial", "",
              "| true Δ of the variants | design | declared | family-wise (Δ = 0) | "
              "seeds/variant | trials/group | GPU-hours/group |",
              "|---|---|---|---|---|---|---|"]
    d = plan.detect
    cases = [[d] * variants, [2 * d] * variants, [5 * d] * variants]
    if variants >= 2:   # a mixed group: no effect, an effect of detect, a clear effect
        cases.append([0.0] * (variants - 2) + [d, 5 * d])
    for k, deltas in enumerate(cases, start=1):
        for row in designs(deltas, plan, groups, sd_diff, seed + k):
            fw = "" if math.isnan(row.family_wise) else f"{row.family_wise:.2%}"
            lines.append(f"| {', '.join(f'{x:g}' for x in deltas)} | {row.design} | "
                         f"{row.declared:.1%} | {fw} | {row.seeds_per_variant:.2f} | "
                         f"{row.trials_per_group:.2f} | "
                         f"{row.trials_per_group * hours_per_trial:.2f} |")
    asha = asha_survival(seed=seed) + asha_survival(seed=seed, grace_period=3)[:1]
    lines += ["", "Early stopping: does the truly best arm survive ASHA? (8 arms 0.5 points "
              "apart, 3 seeds, 16 epochs, η = 2, 2,000 studies; by: trial at grace 3 trains "
              "at least as many epochs as by: arm at grace 2)", "",
              "| ASHA | grace | best arm: every seed full budget | best arm: any seed full "
              "budget | epochs per study |", "|---|---|---|---|---|"]
    for row in asha:
        lines.append(f"| {row.mode} | {row.grace_period} | {row.best_full:.1%} | "
                     f"{row.best_any:.1%} | {row.epochs:.0f} |")
    return "\n".join(lines)
