"""ASHA's rung rule without Ray (`raysweep.decide.rungs`) decides as Ray's own bracket does,
and seed-aware ASHA's scheduler replays recorded arms onto its rungs."""
from __future__ import annotations

import random

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from support.factories import record, spec
from raysweep.decide import rungs as rg
from raysweep.engine.rungs import SeedAwareASHA


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


@pytest.mark.parametrize("reduction_factor", [2, 3, 4, 1.5])
def test_rungs_with_trials_as_units_decide_as_rays_asha(reduction_factor):
    """Random results of 12 trials arriving in a random order: every decision of `Rungs`
    (one unit a trial) equals Ray's AsyncHyperBandScheduler's."""
    rng = random.Random(reduction_factor)
    for budget, grace in ((8, 1), (16, 2), (9, 1)):
        ray_asha = AsyncHyperBandScheduler(time_attr="epoch", metric="v", mode="max",
                                           max_t=budget + 1, grace_period=grace,
                                           reduction_factor=reduction_factor)
        # Ray's rungs up to max_t (`milestones` drops the one at the budget, which the
        # engine never needs: the trial ends there anyway).
        ours = rg.Rungs([m for m, _ in ray_asha._brackets[0]._rungs], reduction_factor)
        trials = {f"t{i}": _Trial(f"t{i}") for i in range(12)}
        for t in trials.values():
            ray_asha.on_trial_add(None, t)
        epoch = dict.fromkeys(trials, 0)
        alive = list(trials)
        while alive:
            name = rng.choice(alive)
            epoch[name] += 1
            value = rng.uniform(0, 100)
            theirs = ray_asha.on_trial_result(None, trials[name], {"epoch": epoch[name],
                                                                  "v": value})
            milestone = ours.due(name, epoch[name])
            mine = ours.judge(name, milestone, value) if milestone is not None else rg.CONTINUE
            assert mine == theirs, (budget, grace, name, epoch[name])
            if theirs == TrialScheduler.STOP or epoch[name] == budget:
                alive.remove(name)


def test_seed_aware_asha_replays_an_arms_seeds_as_one_unit():
    """Recorded seeds put their arm's mean on each rung they reached; the arm went on where
    a seed trained past the rung and was stopped where every seed that reached it stopped."""
    def seeds(model, values, status="completed"):
        return [record(spec(model=model, seed=s, epochs=4), status=status, val_top1=v,
                       top1=[1.0] * len(v)) for s, v in enumerate(values)]

    good = seeds("resnet_20", [[60, 70, 80, 90], [62, 72, 82, 92]])
    bad = seeds("resnet_32", [[10, 11], [12, 13]], status="stopped")
    asha = SeedAwareASHA("val_top1", 1, 2, lambda config: None, good + bad)
    [rungs] = [r for r in asha.rungs.values() if r]
    assert rungs.milestones == [1, 2]
    assert rungs.recorded[1] == {good[0].arm_key: 61, bad[0].arm_key: 11}
    assert rungs.recorded[2] == {good[0].arm_key: 71, bad[0].arm_key: 12}
    assert asha.decided[(good[0].arm_key, 1)] == asha.decided[(good[0].arm_key, 2)] == rg.CONTINUE
    assert asha.decided[(bad[0].arm_key, 1)] == rg.CONTINUE   # bad's seeds trained past it
    assert asha.decided[(bad[0].arm_key, 2)] == rg.STOP
