"""ASHA's rungs for one Tuner: one ASHA per setting and epoch budget, seeded from the
run's records.

    records/ ──replay──▶ BudgetASHA ──▶ {(setting, budget): AsyncHyperBandScheduler}
    Tune trial ──on_trial_result──▶ the ASHA of its own setting and budget

Two rules (README, "Early stopping"):

- A trial trains its own budget. Each (setting, budget) has its own ASHA, with its rungs
  (grace_period·η^k epochs) and `max_t` one past that budget, so trials of different
  budgets or data never compete and no trial is cut at another budget's cap.
- Rungs remember. Before the Tuner starts, every record of the run (any status: a trial
  stopped or interrupted earlier counts at the rungs it reached) is replayed into the
  ASHA of its setting and budget, epoch by epoch, under its trial key. A trial added by
  a re-run, or resumed, is then judged at each rung against every result recorded there,
  as if it had run after the others; a rung a resumed trial had already passed is not
  decided again. The metric is validation top-1 (`driver.METRIC`), never test.

Ray's own ASHA keeps its rungs in the Tuner (ray#30838: lost on restore; a new Tuner
starts empty), so raysweep keeps them in its records instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from raysweep.core.report import decode
from raysweep.core.trial import EpochResult, TrainConfig, TrialRecord, TrialSpec
from raysweep.study.sections import milestones

TIME_ATTR = "epoch"
FINISHED_RUNS = ("completed", "stopped", "diverged")   # ended in Tune: on_trial_complete ran


def rung_group(train: TrainConfig) -> tuple:
    """Trials that compete at ASHA's rungs: the same data, split and epoch budget (the
    setting the tables never rank across, `TrainConfig.SETTING`)."""
    return train.setting()


@dataclass(frozen=True)
class _Ref:
    """What an inner ASHA sees of a trial: its key, so a resumed trial (a new Tune trial)
    is the trial its record describes."""
    trial_id: str


class BudgetASHA(FIFOScheduler):
    """Routes each trial to the ASHA of its (setting, budget); see the module docstring."""

    def __init__(self, metric: str, grace_period: int, reduction_factor: float,
                 spec_of: Callable[[dict], TrialSpec], records: list[TrialRecord] = ()):
        super().__init__()
        self._metric = metric   # Tune checks that every result reports it
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self.spec_of = spec_of
        self.asha: dict[tuple, AsyncHyperBandScheduler | None] = {}
        self.fed: dict[str, int] = {}        # by trial key: last epoch ASHA has seen
        self.live: dict[str, tuple] = {}     # by Tune trial id: (its ASHA or None, trial key)
        for record in records:
            self._replay(record)

    # --- seeding from records ---

    def _replay(self, record: TrialRecord) -> None:
        asha = self._asha(record.train)
        if asha is None or not record.history:
            return
        ref = _Ref(record.key)
        asha.on_trial_add(None, ref)
        self._feed(asha, ref, record.history)
        last = record.history[-1]
        if record.status in FINISHED_RUNS and last.val_top1 is not None:
            # What Tune told ASHA when the trial ended (it may fill a rung it skipped).
            asha.on_trial_complete(None, ref, {TIME_ATTR: last.epoch, self._metric: last.val_top1})
        else:
            asha.on_trial_remove(None, ref)   # a resumed trial is added again by Tune

    def _feed(self, asha, ref: _Ref, history: list[EpochResult]) -> str:
        """Tell ASHA the epochs of `history` it has not seen yet, in order; STOP if a rung
        among them says so."""
        action = TrialScheduler.CONTINUE
        for h in history:
            if h.epoch <= self.fed.get(ref.trial_id, 0) or h.val_top1 is None:
                continue
            self.fed[ref.trial_id] = h.epoch
            if asha.on_trial_result(None, ref, {TIME_ATTR: h.epoch, self._metric: h.val_top1}) \
                    == TrialScheduler.STOP:
                action = TrialScheduler.STOP
        return action

    def _asha(self, train: TrainConfig) -> AsyncHyperBandScheduler | None:
        group = rung_group(train)
        if group not in self.asha:
            # No rung below the budget: nothing to decide, the trial trains in full.
            self.asha[group] = None if not milestones(
                train.epochs, self.grace_period, self.reduction_factor) else \
                AsyncHyperBandScheduler(
                    time_attr=TIME_ATTR, metric=self._metric, mode="max",
                    # max_t one past the budget: ASHA would otherwise STOP every trial at
                    # its last epoch, and a stopped Tune function kills its Train
                    # controller before the controller can release the workers'
                    # placement group (Train's cleaner then has to find it later).
                    max_t=train.epochs + 1, grace_period=self.grace_period,
                    reduction_factor=self.reduction_factor)
        return self.asha[group]

    # --- Tune's calls ---

    def on_trial_add(self, tune_controller, trial) -> None:
        spec = self.spec_of(trial.config)
        key = spec.key
        if key in {k for _, k in self.live.values()}:
            key = trial.trial_id   # a search drew a config that is running now
        asha = self._asha(spec.train)
        self.live[trial.trial_id] = (asha, key)
        if asha is not None:
            asha.on_trial_add(tune_controller, _Ref(key))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        asha, key = self.live.get(trial.trial_id, (None, None))
        if asha is None or TIME_ATTR not in result:
            return TrialScheduler.CONTINUE
        report = decode(result)
        if report is None:
            return asha.on_trial_result(tune_controller, _Ref(key), result)
        # The first report of a launch carries the epochs its checkpoint holds: those a
        # driver that died never judged are judged now, before this one.
        earlier = list(report.launched.history) if report.launched else []
        return self._feed(asha, _Ref(key), [*earlier, report.result])

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        asha, key = self.live.pop(trial.trial_id, (None, None))
        if asha is not None:
            asha.on_trial_complete(tune_controller, _Ref(key), result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        asha, key = self.live.pop(trial.trial_id, (None, None))
        if asha is not None:
            asha.on_trial_remove(tune_controller, _Ref(key))

    def debug_string(self) -> str:
        return "raysweep ASHA per setting and budget: " + "; ".join(
            f"{g[-1]} epochs: {a.debug_string()}" for g, a in self.asha.items() if a)
