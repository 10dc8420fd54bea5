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

`asha: {by: arm}` (`SeedAwareASHA`): a rung promotes or stops an arm, all seeds of one
model and config (`TrialSpec.arm_key`), on the mean validation top-1 of its seeds there,
with ASHA's own rule (`raysweep.decide.rungs.Rungs`). How an arm whose seeds are still
running is compared: it is not, yet. An arm is judged at a rung once every seed of it
that Tune holds (running, queued or paused) has reported that rung; its value is the mean
over every seed that reached the rung, in this run or an earlier one.

- A seed that reaches a rung while a sibling is still queued, paused, not yet through
  its first epoch, or more than an epoch behind waits there: Tune pauses it (its resources go to the siblings) and
  resumes it from its checkpoint at the rung once the arm goes on; if the arm is
  stopped, it is stopped where it waited. Seeds training side by side (siblings within
  an epoch of the rung, a fused array's members) do not pause: they train on, the last
  to report decides, and a stop ends them at the rung. (Should a sibling fall a full
  epoch behind meanwhile, the seed pauses at its next report and, if the arm is then
  stopped at the rung, ends an epoch past it: the tables keep it in a row of its own.)
- A seed that reaches a rung after its arm was judged there (it started later) follows
  that decision; its value still joins the arm's mean at the rung that later arms are
  judged against. So the seeds of an arm end at the same epoch (the exception above
  aside).
- Records replay as with `by: trial`: an arm's recorded seeds put its mean on each rung
  they reached; it went on at a rung if a seed reached the next rung or its budget or
  trained past the rung unstopped, and was stopped there if not and every seed that
  reached it was stopped. The value an arm holds at a rung is the mean of the seeds there
  so far: arms judged meanwhile are compared with it.

Tune counts a paused trial among its running ones: the driver lets as many trials be in
flight as the lanes times the seeds of an arm (`driver._tune`), so an arm's seeds can
always all be in flight and a rung never waits on a seed Tune will not start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from raysweep.core.report import decode
from raysweep.core.trial import EpochResult, TrainConfig, TrialRecord, TrialSpec
from raysweep.decide import rungs as rg
from raysweep.decide.rungs import milestones

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


class SeedAwareASHA(FIFOScheduler):
    """ASHA whose rungs judge arms as wholes (`asha: {by: arm}`; module docstring).
    `lockstep`: keys of trials that train in step with their siblings (fused arrays'
    members), which never pause."""

    def __init__(self, metric: str, grace_period: int, reduction_factor: float,
                 spec_of: Callable[[dict], TrialSpec], records: list[TrialRecord] = (),
                 lockstep: frozenset[str] = frozenset()):
        super().__init__()
        self._metric = metric
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self.spec_of, self.lockstep = spec_of, lockstep
        self.rungs: dict[tuple, rg.Rungs | None] = {}     # by setting and budget
        self.values: dict[tuple[str, float], dict[str, float]] = {}  # (arm, rung): {key: v}
        self.decided: dict[tuple[str, float], str] = {}   # (arm, rung): CONTINUE | STOP
        self.trials: dict[str, _Seed] = {}   # by Tune trial id
        self.reached: dict[str, int] = {}    # by trial key: last epoch reported
        self.waiting: dict[str, tuple[str, float]] = {}   # by Tune trial id: (arm, rung)
        by_arm: dict[str, list[TrialRecord]] = {}
        for record in records:
            by_arm.setdefault(record.arm_key, []).append(record)
        for arm, seeds in by_arm.items():
            self._replay(arm, seeds)

    def _rungs(self, train: TrainConfig) -> rg.Rungs | None:
        group = rung_group(train)
        if group not in self.rungs:
            found = milestones(train.epochs, self.grace_period, self.reduction_factor)
            self.rungs[group] = rg.Rungs(found, self.reduction_factor) if found else None
        return self.rungs[group]

    def _replay(self, arm: str, seeds: list[TrialRecord]) -> None:
        rungs = self._rungs(seeds[0].train)
        if rungs is None:
            return
        for record in seeds:
            for h in record.history:
                self._value(arm, rungs, record.key, h)
        ends = [rg.rung_epoch(m) for m in rungs.milestones[1:]] + [seeds[0].epochs]
        for milestone, next_end in zip(rungs.milestones, ends):
            epoch = rg.rung_epoch(milestone)
            reached = [r for r in seeds if r.history and r.last_epoch >= epoch]
            # Went on: a seed reached the next rung or its budget, or trained past this
            # rung without being stopped (one interrupted between rungs). A seed stopped
            # an epoch past it ran ahead of a sibling while the arm was being judged.
            if any(r.last_epoch >= next_end or r.status == "completed"
                   or (r.status != "stopped" and r.last_epoch > epoch) for r in reached):
                self.decided[(arm, milestone)] = rg.CONTINUE
            elif reached and all(r.status == "stopped" for r in reached):
                self.decided[(arm, milestone)] = rg.STOP

    def _value(self, arm: str, rungs: rg.Rungs, key: str, h: EpochResult) -> None:
        """A seed's result at a rung epoch joins its arm's mean there."""
        for milestone in rungs.milestones:
            if rg.rung_epoch(milestone) == h.epoch and h.val_top1 is not None:
                at = self.values.setdefault((arm, milestone), {})
                at[key] = h.val_top1
                rungs.record(arm, milestone, sum(at.values()) / len(at))

    # --- Tune's calls ---

    def on_trial_add(self, tune_controller, trial) -> None:
        spec = self.spec_of(trial.config)
        self.trials[trial.trial_id] = _Seed(trial, spec.key, spec.arm_key,
                                            self._rungs(spec.train))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.waiting.pop(trial.trial_id, None)
        seed = self.trials.get(trial.trial_id)
        report = decode(result) if seed and seed.rungs else None
        if report is None:
            return TrialScheduler.CONTINUE
        earlier = list(report.launched.history) if report.launched else []
        for h in [*earlier, report.result]:
            self._value(seed.arm, seed.rungs, seed.key, h)
            self.reached[seed.key] = max(self.reached.get(seed.key, 0), h.epoch)
        return self._decide(tune_controller, seed)

    def _decide(self, tune_controller, seed: "_Seed") -> str:
        """Walk the rungs this seed has reached: follow the arm's decisions; at the first
        one still open, wait for the siblings or, when they are all there, decide."""
        for milestone in seed.rungs.milestones:
            if self.reached[seed.key] < rg.rung_epoch(milestone):
                break
            decision = self.decided.get((seed.arm, milestone))
            if decision is None:
                behind = self._behind(seed, milestone)
                if behind:
                    if self._keeps_training(seed, milestone, behind):
                        return TrialScheduler.CONTINUE
                    self.waiting[seed.trial.trial_id] = (seed.arm, milestone)
                    return TrialScheduler.PAUSE
                decision = self._judge(tune_controller, seed, milestone)
            if decision == rg.STOP:
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _judge(self, tune_controller, seed: "_Seed", milestone: float) -> str | None:
        """The arm's decision at `milestone` on the mean of its seeds there, as `_value`
        keeps it on the rung (None: no seed holds a validation result there); a stop ends
        every sibling Tune still holds."""
        mean = seed.rungs.recorded[milestone].get(seed.arm)
        if mean is None:
            return None
        decision = seed.rungs.judge(seed.arm, milestone, mean)
        self.decided[(seed.arm, milestone)] = decision
        if decision == rg.STOP:
            self._stop_siblings(tune_controller, seed)
        return decision

    def _siblings(self, seed: "_Seed") -> list["_Seed"]:
        return [s for s in self.trials.values() if s.arm == seed.arm and s is not seed]

    def _behind(self, seed: "_Seed", milestone: float) -> list["_Seed"]:
        """The siblings Tune holds that have not reached `milestone` yet."""
        return [s for s in self._siblings(seed)
                if self.reached.get(s.key, 0) < rg.rung_epoch(milestone)]

    def _keeps_training(self, seed: "_Seed", milestone: float, behind: list["_Seed"]) -> bool:
        """Whether a seed at an open rung trains on instead of pausing: a fused array's
        member always (its array trains in step); another while it is at the rung itself
        and every sibling behind is training within an epoch of it (it has reported an
        epoch: a Tune trial whose Train workers wait for resources is RUNNING too), so the
        arm is judged before this seed reports again, and a stop then ends it at the
        rung. (A pause relaunches a trial: seconds of start-up on Train workers.)"""
        if seed.key in self.lockstep:
            return True
        epoch = rg.rung_epoch(milestone)
        return self.reached[seed.key] == epoch and all(
            s.trial.status == s.trial.RUNNING
            and self.reached.get(s.key, 0) >= max(1, epoch - 1) for s in behind)

    def _stop_siblings(self, tune_controller, seed: "_Seed") -> None:
        for sibling in self._siblings(seed):
            if sibling.trial.status in (sibling.trial.RUNNING, sibling.trial.PAUSED):
                tune_controller.stop_trial(sibling.trial)

    def choose_trial_to_run(self, tune_controller):
        """A paused seed whose arm has been judged at its rung first (its arm can then
        end), then the next queued trial; a seed waiting on its siblings stays paused."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == trial.PAUSED and self.waiting.get(trial.trial_id) in self.decided:
                return trial
        return next((t for t in trials if t.status == t.PENDING), None)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._forget(tune_controller, trial)

    def _forget(self, tune_controller, trial) -> None:
        """A trial Tune no longer holds: siblings waiting at a rung it never reached (it
        errored, diverged or was stopped) are no longer held back by it."""
        gone = self.trials.pop(trial.trial_id, None)
        self.waiting.pop(trial.trial_id, None)
        if gone is None:
            return
        for trial_id, (arm, milestone) in list(self.waiting.items()):
            waiting = self.trials.get(trial_id)
            if arm == gone.arm and waiting and (arm, milestone) not in self.decided \
                    and not self._behind(waiting, milestone):
                if self._judge(tune_controller, waiting, milestone) == rg.STOP:
                    tune_controller.stop_trial(waiting.trial)

    def debug_string(self) -> str:
        return f"raysweep seed-aware ASHA: {len(self.decided)} decisions at arms' rungs"


@dataclass(frozen=True)
class _Seed:
    """A trial as seed-aware ASHA sees it."""
    trial: object                # Tune's Trial (its status is read live)
    key: str
    arm: str
    rungs: rg.Rungs | None
