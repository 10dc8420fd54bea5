"""The adaptive-seed rule (`raysweep.decide.seeding`): its looks, its sequential p, the
path a variant's recorded seeds take, and the seeds a run's records ask for."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from support.factories import record, spec
from raysweep.decide import seeding as sd
from raysweep.decide import stats as st


def test_looks_grow_by_about_half_and_end_at_max():
    assert sd.SeedPlan(3, 10, 1.0).looks == [3, 5, 8, 10]
    assert sd.SeedPlan(2, 4, 1.0).looks == [2, 3, 4]
    assert sd.SeedPlan(5, 5, 1.0).looks == [5]


def test_the_sequential_p_is_uniform_when_seeds_differ_by_noise_alone():
    """Fresh null sequences (another generator than the one behind the p): looked at every
    possible look, P(p ≤ u) ≈ u; looked at fewer, it can only be smaller."""
    plan = sd.SeedPlan(3, 10, 1.0)
    rng = np.random.default_rng(7)
    every, first_two = [], []
    for d in rng.standard_normal((4_000, plan.max)):
        p = {n: sps.ttest_1samp(d[:n], 0).pvalue for n in plan.looks}
        every.append(sd.sequential_p(p, plan))
        first_two.append(sd.sequential_p({n: p[n] for n in plan.looks[:2]}, plan))
    for u in (0.01, 0.05, 0.2):
        share = np.mean(np.array(every) <= u)
        assert abs(share - u) <= 3 * math.sqrt(u * (1 - u) / len(every)), (u, share)
        assert np.mean(np.array(first_two) <= u) <= share
    assert all(b >= a for a, b in zip(every, first_two))


def values(deltas: list[float]) -> dict[int, float]:
    return {s: 80.0 + d for s, d in enumerate(deltas)}


def test_a_clear_effect_is_decided_at_the_second_look():
    base = values([0.0, 0.1, -0.1, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    worse = {s: v - 20 + 0.01 * s for s, v in base.items()}
    path = sd.seeding_path(worse, base, 1, sd.SeedPlan(3, 10, 1.0))
    assert path == sd.Path([3, 5], 5, sd.DECIDED)


def test_no_effect_with_quiet_seeds_stops_once_no_difference_of_detect_is_left():
    base = values([0.0] * 10)
    same = {s: v + (0.01 if s % 2 else -0.01) for s, v in base.items()}
    path = sd.seeding_path(same, base, 1, sd.SeedPlan(3, 10, 1.0))
    assert path.why == sd.DETECT_REACHED and path.seeds == 3


def test_noisy_seeds_without_an_effect_run_to_max_through_every_look():
    rng = np.random.default_rng(3)
    base, noisy = values(list(rng.normal(0, 3, 10))), values(list(rng.normal(0, 3, 10)))
    path = sd.seeding_path(noisy, base, 1, sd.SeedPlan(3, 10, 1.0))
    assert path == sd.Path([3, 5, 8, 10], 10, sd.REACHED_MAX)
    # Before its seeds are recorded, the path asks for the look it needs next.
    waiting = sd.seeding_path({s: noisy[s] for s in range(3)}, base, 1, sd.SeedPlan(3, 10, 1.0))
    assert waiting.why is None and waiting.looks == [3] and waiting.seeds == path.looks[1]


def test_the_verdict_p_uses_test_top1_over_the_looks_taken():
    rng = np.random.default_rng(4)
    base, variant = values(list(rng.normal(0, 1, 10))), values(list(rng.normal(1, 1, 10)))
    plan = sd.SeedPlan(3, 10, 1.0)
    p = {n: sps.ttest_rel([variant[s] for s in range(n)], [base[s] for s in range(n)]).pvalue
         for n in (3, 5)}
    assert sd.verdict_p(variant, base, [3, 5], plan) == sd.sequential_p(p, plan)


def test_the_runs_records_ask_seeds_for_open_variants_and_their_baseline():
    plan = sd.SeedPlan(2, 4, 1.0)

    def seeds(variant, baseline, deltas):
        return [record(spec(group="g", variant=variant, baseline=baseline, seed=s,
                            epochs=1, lr=0.1 + len(variant) * 1e-3),
                       val_top1=[80.0 + d], top1=[80.0 + d]) for s, d in enumerate(deltas)]

    base = seeds("base", True, [0.0, 0.0, 0.01])
    decided = seeds("worse", False, [-20.0, -20.01, -20.02])
    noisy = seeds("noisy_one", False, [5.0, -4.0])
    wanted = sd.seeds_wanted(base + decided + noisy, plan)
    # The clear effect is decided at the second look (3 seeds); the open variant runs to
    # its next look (3 seeds), the baseline with it.
    assert wanted == {decided[0].arm_key: 3, noisy[0].arm_key: 3, base[0].arm_key: 3}


def test_the_probability_of_beating_the_baseline_is_phi_of_mean_over_std():
    diffs = [0.4, 1.2, -0.3, 0.9, 0.6]
    estimate, low, high = st.beat_probability(diffs)
    assert estimate == sps.norm.cdf(np.mean(diffs) / np.std(diffs, ddof=1))
    assert low <= estimate <= high and (low, high) == st.beat_probability(diffs)[1:]
    assert all(math.isnan(x) for x in st.beat_probability([1.0]))


def test_a_seed_that_ended_short_of_its_budget_ends_the_variants_seeding():
    """A look needs every one of its seeds: a seed that ended early (ASHA stopped the arm,
    it diverged or errored) never will, so the variant stops there instead of waiting;
    while its seeds may still come, the path waits for them."""
    plan = sd.SeedPlan(3, 10, 1.0)
    rng = np.random.default_rng(5)
    base, noisy = values(list(rng.normal(0, 3, 10))), values(list(rng.normal(0, 3, 10)))
    gone = {s: v for s, v in noisy.items() if s != 3}
    assert sd.seeding_path(gone, base, 1, plan) == sd.Path([3], 5, None)
    assert sd.seeding_path(gone, base, 1, plan, frozenset({3})) == sd.Path([3], 5,
                                                                          sd.ENDED_EARLY)
    # The verdict leaves out a look whose seeds are not all there, never uses fewer pairs.
    complete = sd.verdict_p(noisy, base, [3], plan)
    assert sd.verdict_p(gone, base, [3, 5], plan) == complete
    assert math.isnan(sd.verdict_p({0: 1.0}, base, [3], plan))
