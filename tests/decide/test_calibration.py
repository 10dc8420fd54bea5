"""The calibration of the decision procedure (`raysweep.decide.calibration`): the A/A
family-wise rate over 10,000 simulated groups is within α + 2 Monte-Carlo standard
errors, adaptive seeds save seeds on clear effects, and seed-aware ASHA keeps the best
arm whole more often than per-trial ASHA. `raysweep calibrate` prints the tables."""
from __future__ import annotations

import math

from support.cli import raysweep
from raysweep.decide import calibration as cal
from raysweep.decide import seeding as sd
from raysweep.decide import stats as st

BOUND = st.ALPHA + 2 * math.sqrt(st.ALPHA * (1 - st.ALPHA) / cal.GROUPS)


def test_with_no_true_difference_the_family_wise_rate_stays_at_alpha():
    adaptive, fixed = cal.designs([0.0] * 3, sd.SeedPlan(3, 10, 1.0), cal.GROUPS)
    assert adaptive.groups == cal.GROUPS and adaptive.family_wise <= BOUND, adaptive
    assert fixed.family_wise <= BOUND, fixed


def test_a_clear_effect_is_declared_with_fewer_seeds_than_a_fixed_design():
    adaptive, fixed = cal.designs([5.0] * 3, sd.SeedPlan(3, 10, 1.0), 1_000)
    assert adaptive.declared >= 0.95 and fixed.declared >= 0.99
    assert adaptive.trials_per_group < 0.7 * fixed.trials_per_group


def test_seed_aware_asha_keeps_the_best_arm_whole_more_often():
    by_trial, by_arm = cal.asha_survival(studies=300)
    assert (by_trial.mode, by_arm.mode) == ("by: trial", "by: arm")
    assert by_arm.best_full > by_trial.best_full + 0.3


def test_calibrate_prints_the_three_tables_and_refuses_bad_values():
    done = raysweep("calibrate", "--groups", "200", "--detect", "2")
    assert done.returncode == 0, done.stderr
    for title in ("A/A", "Power", "Early stopping"):
        assert title in done.stdout
    bad = raysweep("calibrate", "--max", "2")
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0
    assert "--max=2" in bad.stderr and "allowed" in bad.stderr
