"""Which trials' numbers may be put side by side, averaged or ranked.

    setting   the data, split and epoch budget of a trial: numbers of different settings
              are never ranked, averaged or tested together
    Cohort    the seeds of one arm (`TrialRecord.arm_key`) that ended the same way: ran the
              full budget, or were stopped by ASHA at the same epoch. Only a cohort's
              seeds are averaged together. Diverged, errored, interrupted and running
              trials form no cohort: they are counted in their arm's status, never averaged.

A number a record does not hold is None here and an empty cell in the tables.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from raysweep.core.trial import TrainConfig, TrialRecord, finite

# What a test accuracy measures and after how much training: the data, its split and the
# epoch budget (declared on the type).
SETTING_FIELDS = TrainConfig.SETTING

FULL, STOPPED, NONE = "full budget", "stopped", "no result"

Metric = Callable[[TrialRecord], "float | None"]


def setting(record: TrialRecord) -> tuple:
    return record.train.setting()


def setting_text(value: tuple) -> str:
    s = dict(zip(SETTING_FIELDS, value))
    data = s["dataset"] + (f" ({s['synthetic_classes']} classes)" if s["synthetic_classes"] else "")
    train = "all" if s["train_size"] is None else str(s["train_size"])
    test = "all" if s["test_size"] is None else str(s["test_size"])
    if s["test_fraction"]:   # an image folder split into train and test by raysweep
        test += f" ({s['test_fraction']:.0%} of the folder's images)"
    held = f", {s['val_fraction']:.0%} of them held out for validation" if s["val_fraction"] else ""
    return f"{data}: {train} training images{held}, {test} test images, {s['epochs']} epochs"


def ending(record: TrialRecord) -> tuple[str, int | None]:
    """(FULL, budget) for a trial that trained its whole budget, (STOPPED, e) for one ASHA
    stopped after epoch e, (NONE, None) for any other: its numbers are not comparable."""
    if record.status == "completed" and record.last_epoch == record.epochs:
        return FULL, record.epochs
    if record.status == "stopped" and record.history:
        return STOPPED, record.last_epoch
    return NONE, None


def status_text(record: TrialRecord) -> str:
    status, at = record.status, record.stopped_at_epoch or record.last_epoch
    if status == "completed" and record.last_epoch != record.epochs:
        return f"completed, history ends at epoch {record.last_epoch} of {record.epochs}"
    if status == "stopped":
        return f"stopped by ASHA at epoch {at}"
    if status in ("diverged", "interrupted"):
        return f"{status} at epoch {at}"
    return status


def status_counts(records: list[TrialRecord]) -> str:
    counts = Counter(status_text(r) for r in records)
    return "; ".join(f"{text} ×{n}" for text, n in sorted(counts.items()))


# --- one number of one trial ---

def final(metric: str = "test_top1") -> Metric:
    """The metric after the trial's last finished epoch (not its best epoch: picking the
    epoch by the test accuracy it reports would select on the test set)."""
    return lambda r: finite(getattr(r.history[-1], metric)) if r.history else None


def at_epoch(epoch: int | None, metric: str = "test_top1") -> Metric:
    def value(r: TrialRecord) -> float | None:
        found = [h for h in r.history if h.epoch == epoch]
        return finite(getattr(found[0], metric)) if found else None
    return value


def train_hours(r: TrialRecord) -> float | None:
    """Wall time of the finished epochs (training and evaluation, start-up excluded)."""
    return sum(h.epoch_seconds for h in r.history) / 3600 if r.history else None


def images_per_s(r: TrialRecord) -> float | None:
    return float(np.mean([h.images_per_s for h in r.history])) if r.history else None


def gpu_hours(r: TrialRecord) -> float | None:
    return r.gpu_hours()


# --- cohorts ---

@dataclass
class Cohort:
    """Seeds of one arm that ended the same way (the only trials averaged together)."""
    arm_key: str
    ending: str                     # FULL | STOPPED | NONE
    end_epoch: int | None           # the epoch every trial of the cohort ended at
    records: list[TrialRecord]      # one per seed; empty for a NONE cohort
    # the arm's trials with no comparable number (diverged, errored, ...): shown in the
    # status of the arm's first cohort, never averaged
    excluded: list[TrialRecord] = field(default_factory=list)

    @property
    def first(self) -> TrialRecord:
        return (self.records or self.excluded)[0]

    @property
    def setting(self) -> tuple:
        return setting(self.first)

    @property
    def ended(self) -> str:
        if self.ending == FULL:
            return f"full budget ({self.end_epoch} epochs)"
        if self.ending == STOPPED:
            return f"stopped by ASHA at epoch {self.end_epoch}"
        return NONE

    @property
    def status(self) -> str:
        return status_counts(self.records + self.excluded)

    def per_seed(self, metric: Metric) -> dict[int, float]:
        """{seed: value} over the cohort's seeds that hold the number."""
        values = {r.seed: metric(r) for r in self.records}
        return {s: v for s, v in sorted(values.items()) if v is not None}

    def trials(self) -> list[TrialRecord]:
        return self.records + self.excluded


def cohorts(records: list[TrialRecord]) -> list[Cohort]:
    """Every arm's cohorts: its full-budget seeds, then its stopped seeds by epoch (latest
    first); an arm with neither gets one NONE cohort. An arm's trials with no comparable
    number ride on its first cohort."""
    by_arm: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_arm[r.arm_key].append(r)
    out = []
    for arm_key, recs in by_arm.items():
        recs = sorted(recs, key=lambda r: (r.seed, r.key))
        ended: dict[tuple, list[TrialRecord]] = defaultdict(list)
        for r in recs:
            ended[ending(r)].append(r)
        excluded = ended.pop((NONE, None), [])
        order = sorted(ended, key=lambda e: (e[0] != FULL, -e[1]))
        found = [Cohort(arm_key, kind, epoch, ended[(kind, epoch)]) for kind, epoch in order]
        found = found or [Cohort(arm_key, NONE, None, [])]
        found[0].excluded = excluded
        out.append(found[0])
        out += found[1:]
    return out


def equal_budget_epoch(records: list[TrialRecord]) -> int | None:
    """The largest epoch every full-budget and every stopped trial reached. Diverged,
    errored and unfinished trials do not count: one trial that diverges at epoch 2 must
    not pull the whole table back to epoch 2."""
    reached = [e for kind, e in map(ending, records) if kind != NONE]
    return min(reached) if reached else None


# --- names ---

def model_names(record: TrialRecord) -> str:
    """The record's model, or every model its labels name when they are names of one
    network (trained once): `ecanet20_adaptive = ecanet20_fixed_k3`."""
    return " = ".join(dict.fromkeys([record.model] + [x.model for x in record.labels if x.model]))


def arm_names(records: list[TrialRecord], key: Callable[[TrialRecord], str] = lambda r: r.arm_key,
              skip: Callable[[TrialRecord], set] = lambda r: set()) -> dict[str, str]:
    """{key(record): name}: the model, its options, and the training values that tell this
    arm apart from the same model's other arms (`skip(record)`: keys never to show)."""
    shown: dict[str, tuple[str, dict, dict]] = {}
    for r in records:
        train = {k: v for k, v in r.train.identity().items() if k not in skip(r)}
        shown.setdefault(key(r), (model_names(r), r.model_options, train))
    by_model: dict[str, list[dict]] = defaultdict(list)
    for model, _, train in shown.values():
        by_model[model].append(train)
    # Which keys take more than one value among a model's arms: once per model, not per
    # arm (a study of 500 arms spent most of its report here).
    varies = {model: {k for k in set().union(*siblings)
                      if len({json.dumps(s.get(k), default=str) for s in siblings}) > 1}
              for model, siblings in by_model.items()}
    names = {}
    for arm, (model, options, train) in shown.items():
        differs = [k for k in sorted(train) if k in varies[model]]
        if "lr" in differs and "peak_lr" in differs:
            differs.remove("peak_lr")   # follows lr: showing both says the same thing twice
        extra = [f"{k}={v}" for k, v in sorted(options.items())] + \
                [f"{k}={train[k]}" for k in differs]
        names[arm] = model + (f" [{' '.join(extra)}]" if extra else "")
    return names
