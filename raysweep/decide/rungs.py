"""ASHA's rule at one rung, without Ray: the engine's seed-aware ASHA
(`raysweep.engine.rungs`, `asha: {by: arm}`) and the calibration simulation
(`raysweep.decide.calibration`) both decide with it.

A unit is what ASHA promotes or stops: a trial (`by: trial`, Ray's own ASHA in the
engine) or an arm, all seeds of one model and config (`by: arm`), whose value at a rung is
the mean validation top-1 of its seeds there. The rule is Ray's (`_Bracket.on_result` of
`AsyncHyperBandScheduler`, one bracket): a unit reaching a rung goes on unless its value
is below the (1 − 1/η) quantile of the values recorded at that rung before it; then its
value is recorded there. tests/decide/test_rung_rule.py checks that `Rungs` with trials as
units decides exactly as Ray's bracket does.
"""
from __future__ import annotations

import math

import numpy as np

CONTINUE, STOP = "CONTINUE", "STOP"


def milestones(budget: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The epochs at which ASHA may stop a trial of this budget: Ray's rungs
    (`AsyncHyperBandScheduler`'s one bracket, grace_period·η^k, with max_t = budget + 1)
    below the budget, since a rung at the last epoch stops nothing. Computed as Ray
    computes them, without importing Ray (`show` prints them; tests/engine/test_rungs.py
    compares them with Ray's own bracket)."""
    if grace_period > budget:
        return []
    count = int(math.log((budget + 1) / grace_period) / math.log(reduction_factor) + 1)
    return sorted(m for m in (grace_period * reduction_factor ** k for k in range(count))
                  if m < budget)


class Rungs:
    """The rungs of one setting and epoch budget: {milestone epoch: {unit: value}}."""

    def __init__(self, milestones: list[float], reduction_factor: float):
        self.reduction_factor = reduction_factor
        self.recorded: dict[float, dict[str, float]] = {m: {} for m in sorted(milestones)}

    @property
    def milestones(self) -> list[float]:
        return list(self.recorded)

    def cutoff(self, milestone: float, unit: str) -> float | None:
        """The value a unit must reach at `milestone` to go on: the (1 − 1/η) quantile of
        the other units recorded there (None when there are none: the first goes on)."""
        others = [v for u, v in self.recorded[milestone].items() if u != unit]
        if not others:
            return None
        return float(np.nanpercentile(others, (1 - 1 / self.reduction_factor) * 100))

    def judge(self, unit: str, milestone: float, value: float) -> str:
        """CONTINUE or STOP for `unit` at `milestone`; its value is recorded there."""
        cutoff = self.cutoff(milestone, unit)
        self.recorded[milestone][unit] = value
        return STOP if cutoff is not None and value < cutoff else CONTINUE

    def due(self, unit: str, epoch: int) -> float | None:
        """The rung a result at `epoch` is judged at, as Ray's bracket picks it: the
        highest milestone reached at which the unit has no value recorded yet."""
        for milestone in reversed(self.milestones):
            if epoch >= milestone and unit not in self.recorded[milestone]:
                return milestone
        return None

    def record(self, unit: str, milestone: float, value: float) -> None:
        """A value known at a rung without a decision being taken now (a replayed record,
        a seed that reached a rung its arm was judged at already)."""
        self.recorded[milestone][unit] = value


def rung_epoch(milestone: float) -> int:
    """The epoch whose result is a unit's value at `milestone` (η may be fractional)."""
    return math.ceil(milestone)
