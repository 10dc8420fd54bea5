"""A Tune callback on the driver that keeps `records/<key>.json` current as results arrive.

It runs on the driver, so it also sees trials that ASHA stops and trials whose workers
die. The worker is the source of a trial's history and segments (they travel in its
checkpoint, so a trial resumed after a driver died keeps the epochs the dead driver never
recorded); this callback turns each report into the trial's `TrialRecord`.
"""
from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import ray.tune

from models import get_entry
from raysweep.store import records as rec
from raysweep.core.report import decode
from raysweep.core.status import Status
from raysweep.core.trial import TrialRecord, TrialSpec
from raysweep.store.storage import RemotePath

Observer = Callable[[TrialRecord], None]


class RecordWriter(ray.tune.Callback):
    def __init__(self, run_dir: Path | RemotePath, spec_of: Callable[[dict], TrialSpec],
                 observers: list[Observer] = ()):
        self.run_dir = run_dir
        self.spec_of = spec_of           # Tune config → TrialSpec
        self.observers = list(observers)
        self.open: dict[str, TrialRecord] = {}   # by Tune trial id
        self.replayed: set[str] = set()          # Tune trial ids of replayed search samples

    def __getstate__(self):
        # Tune pickles its run config (callbacks included) for Tuner.restore, which
        # raysweep never uses; observers hold terminals and open files.
        return {**self.__dict__, "observers": []}

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id in self.open:
            return self.open[trial.trial_id]
        spec = self.spec_of(trial.config)
        record = rec.read_record(self.run_dir, spec.key)
        if record is not None and record.finished and spec.sampled_from is not None:
            # A search drew a finished sample again: its Tune function replays the record,
            # which stays as it is.
            self.replayed.add(trial.trial_id)
            self.open[trial.trial_id] = record
            return record
        if record is None or record.finished:
            entry = get_entry(spec.model)
            record = TrialRecord.new(spec, entry.family, entry.innovation, now())
            if spec.sampled_from is not None:
                record.sample = 1 + sum(r.sampled_from == spec.sampled_from
                                        for r in rec.read_records(self.run_dir))
        for label in spec.labels:
            record.add_label(label)
        record.status, record.finished_at, record.error = Status.RUNNING, None, None
        record.traceback = None
        record.trial_ids.append(trial.trial_id)
        self.open[trial.trial_id] = record
        return record

    def _write(self, record: TrialRecord) -> None:
        rec.write_record(self.run_dir, record)
        for observe in self.observers:
            observe(record)

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self._record(trial)
        if trial.trial_id not in self.replayed:
            self._write(record)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        if trial.trial_id in self.replayed:
            return
        report = decode(result)
        entry, launched = report.result, report.launched
        if launched is not None:  # the first report of a launch
            record.segments = list(launched.segments)
            for problem in record.segments[-1].skipped_checkpoints:
                warnings.warn(problem, stacklevel=1)  # once, where the user sees it
            record.history = list(launched.history)
            record.params, record.flops = launched.params, launched.flops
            record.restarts = len(record.segments) - 1
        record.history = [h for h in record.history if h.epoch < entry.epoch] + [entry]
        if entry.train_loss is None:
            record.status, record.stopped_at_epoch = Status.DIVERGED, entry.epoch
            record.error = f"non-finite training loss at epoch {entry.epoch}"
        self._write(record)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        if trial.trial_id in self.replayed:
            self.open.pop(trial.trial_id, None)
            return
        if record.status != Status.DIVERGED:
            finished = record.last_epoch >= record.epochs
            record.status = Status.COMPLETED if finished else Status.STOPPED
            record.stopped_at_epoch = None if finished else record.last_epoch
        self._finish(trial, record)

    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        from raysweep.store.redact import redact_text

        record.status, record.error = Status.ERRORED, redact_text(_error_text(trial))
        record.traceback = _traceback_text(trial)
        self._finish(trial, record)

    def interrupt_open(self) -> list[TrialRecord]:
        """Mark every trial still running as interrupted (Ctrl-C): it resumes from its
        last checkpoint on the next run of the study."""
        stopped = []
        for trial_id, record in list(self.open.items()):
            if trial_id in self.replayed or record.finished:
                continue
            record.status, record.stopped_at_epoch = Status.INTERRUPTED, record.last_epoch
            record.finished_at = now()
            self._write(record)
            stopped.append(record)
        self.open.clear()
        return stopped

    def _finish(self, trial, record: TrialRecord) -> None:
        record.finished_at = now()
        self._write(record)
        self.open.pop(trial.trial_id, None)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


MAX_TRACEBACK_CHARS = 20_000


def _traceback_text(trial) -> str | None:
    """The trial's last traceback (Tune's error file), credentials masked, its end kept."""
    from raysweep.store.redact import redact_text

    path = getattr(trial, "error_file", None) or ""
    if not (path and Path(path).is_file()):
        return None
    return redact_text(Path(path).read_text(errors="replace")[-MAX_TRACEBACK_CHARS:])


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:2000] if lines else "unknown error"
    return str(getattr(trial, "error_msg", "") or "unknown error")[:2000]
