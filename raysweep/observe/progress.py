"""Watching a study: one view of its trials, shown live while it runs and by `status` after.

    view = StudyView.build(records, total=138)     # counts, running trials, ETA, GPU-hours
    print(format_view(view))                       # what `raysweep status RUN` prints

    progress = make_progress("ablations", total=138)   # rich live display on a terminal,
    progress.observe(record)                           # plain lines in a pipe or job log
    progress.close()

A trial is named by its label, `group.variant-sSEED` (`-nSAMPLE` for a search sample),
never by Ray Tune's trial id. The ETA assumes every unfinished trial trains its whole
epoch budget at the epoch times measured so far, so it is an upper bound when ASHA stops
trials early; the output says so. It spreads that work over the trials the run holds at
once (`concurrency`, as the driver planned it), not over the trials running at the moment,
so it does not jump when one trial ends before the next starts; and it is never shorter
than the longest trial left, which runs in one lane.

Units: times in seconds, accuracies in percent.
"""
from __future__ import annotations

import copy

import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import IO, Iterable

from raysweep.core.labels import arm_label, arm_tags, distinct_label, trial_label
from raysweep.core.status import FINISHED
from raysweep.core.trial import TrialRecord

FAILED = ("diverged", "errored")
# How each record status is counted in the view's summary line.
COUNTED_AS = {"completed": "done", "stopped": "stopped", "diverged": "failed",
              "errored": "failed", "running": "running", "interrupted": "interrupted"}


@dataclass(frozen=True)
class TrialRow:
    """One trial as the view shows it (the last finished epoch's numbers)."""
    label: str
    key: str
    model: str
    status: str
    epoch: int                  # epochs finished
    epochs: int                 # epoch budget
    val_top1: float | None      # percent; None without a validation split
    test_top1: float | None     # percent
    epoch_seconds: float | None  # wall time of the last epoch
    error: str | None

    @classmethod
    def of(cls, record: TrialRecord, label: str | None = None) -> "TrialRow":
        last = record.history[-1] if record.history else None
        return cls(label or trial_label(record), record.key, record.model, record.status,
                   record.last_epoch, record.epochs, last and last.val_top1,
                   last and last.test_top1, last and last.epoch_seconds, record.error)


@dataclass(frozen=True)
class StudyView:
    """Where a study stands: what live progress shows and `raysweep status` prints."""
    study: str
    total: int                  # trials in the study (at least the records found)
    counts: dict[str, int]      # done | running | pending | stopped | failed | interrupted
    rows: list[TrialRow]        # every trial with a record: running first, then by label
    eta_seconds: float | None   # full budgets at measured epoch times; None: nothing to go on
    gpu_hours: float | None     # Σ over records; None when no trial used a GPU
    epochs_left: int = 0        # of unfinished trials at full budgets; 0 before any epoch
    measured_epochs: int = 0    # epochs whose times the ETA is computed from
    elapsed_seconds: float | None = None   # since this sitting of the run started; None:
                                           # not running, or not known

    @classmethod
    def build(cls, records: Iterable[TrialRecord], total: int | None = None,
              study: str | None = None, concurrency: int | None = None,
              elapsed: float | None = None) -> "StudyView":
        records = list(records)
        total = max(total or 0, len(records))
        counts = Counter(COUNTED_AS[r.status] for r in records)
        counts["pending"] = total - len(records)
        tags = arm_tags(records)
        rows = sorted((TrialRow.of(r, distinct_label(r, tags)) for r in records),
                      key=lambda row: (row.status != "running", row.label))
        hours = [h for h in (r.gpu_hours() for r in records) if h is not None]
        left, seconds, longest, measured = _remaining(records, counts["pending"])
        eta = eta_seconds(seconds, longest, counts, total, concurrency)
        name = study or (records[0].study if records else "?")
        return cls(name, total, {k: counts.get(k, 0) for k in
                                 ("done", "running", "pending", "stopped", "failed",
                                  "interrupted")},
                   rows, eta, sum(hours) if hours else None, left, measured, elapsed)

    @property
    def finished(self) -> int:
        """Trials that will not train again: completed, stopped or failed."""
        return self.counts["done"] + self.counts["stopped"] + self.counts["failed"]

    @property
    def over(self) -> bool:
        """Nothing runs and nothing is left to start."""
        return self.finished == self.total


def _remaining(records: list[TrialRecord], pending: int
               ) -> tuple[int, float | None, float, int]:
    """(epochs left, their seconds at the measured epoch times, the longest trial's
    seconds left, epochs measured).

    A model's epoch time is the mean over its finished epochs; a model not measured yet
    (and a pending trial, whose model is unknown here) gets the mean over all models."""
    by_model: dict[str, list[float]] = {}
    for r in records:
        by_model.setdefault(r.model, []).extend(e.epoch_seconds for e in r.history)
    every = [s for times in by_model.values() for s in times]
    if not every:
        return 0, None, 0.0, 0
    overall = statistics.fmean(every)
    unfinished = [r for r in records if r.status not in FINISHED]
    budget = statistics.fmean(r.epochs for r in records)  # a pending trial's, as far as known
    left = sum(r.epochs - r.last_epoch for r in unfinished) + round(pending * budget)
    each = [(r.epochs - r.last_epoch) * statistics.fmean(by_model[r.model] or [overall])
            for r in unfinished]
    return (left, *_seconds_left(each, pending, budget * overall), len(every))


def _seconds_left(each: list[float], pending: int, a_pending: float) -> tuple[float, float]:
    """(seconds left in all, the longest trial's): `each` unfinished trial's seconds left,
    and `pending` trials not started of `a_pending` seconds each."""
    return (sum(each) + pending * a_pending,
            max(each + ([a_pending] if pending else []), default=0.0))


def eta_seconds(seconds: float | None, longest: float, counts: dict[str, int], total: int,
                concurrency: int | None) -> float | None:
    """The seconds left over the lanes the work can use: the trials the run holds at once
    (`concurrency`), never more than the trials left; without it (a `status` of a run
    not running now), the trials running. Never shorter than the longest trial left."""
    unfinished = total - sum(counts[k] for k in ("done", "stopped", "failed"))
    lanes = min(concurrency, unfinished) if concurrency else counts["running"]
    if seconds is None or lanes <= 0:
        return None
    return max(seconds / lanes, longest)


# --- text ---

def duration(seconds: float | None) -> str:
    """`2h10m`, `4m05s`, `12s`; `?` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


ETA_NOTE = "ETA: full epoch budgets at the epoch times measured so far; ASHA stops shorten it"


def eta_text(view: StudyView) -> str:
    """`ETA ≤ 2h10m (from 14 epochs)` (an upper bound: see ETA_NOTE), `finished`, `ETA ?`."""
    if view.over:
        return "finished"
    if view.eta_seconds is None:
        return "ETA ?" + (" (no epoch measured yet)" if view.counts["running"]
                          else " (nothing running)")
    n = view.measured_epochs
    return f"ETA ≤ {duration(view.eta_seconds)} (from {n} epoch{'s' if n > 1 else ''})"


def summary_line(view: StudyView) -> str:
    """`study s: 3/138 finished · 2 running · 133 pending · ... · ETA ≤ 2h10m · GPU-hours 1.2`"""
    parts = [f"{view.finished}/{view.total} finished ({view.counts['done']} completed, "
             f"{view.counts['stopped']} stopped, {view.counts['failed']} failed)",
             f"{view.counts['running']} running", f"{view.counts['pending']} pending"]
    if view.counts["interrupted"]:
        parts.append(f"{view.counts['interrupted']} interrupted (resume to continue)")
    if view.elapsed_seconds is not None:
        parts.append(f"elapsed {duration(view.elapsed_seconds)}")
    gpu = "—, no GPU used" if view.gpu_hours is None else f"{view.gpu_hours:.2f}"
    parts += [eta_text(view), f"GPU-hours {gpu}"]
    return f"study {view.study}: " + " · ".join(parts)


COLUMNS = ("trial", "model", "status", "epoch", "val top1", "test top1", "s/epoch")
NUMERIC = ("epoch", "val top1", "test top1", "s/epoch")


def row_cells(row: TrialRow) -> tuple[str, ...]:
    status = row.status + (f": {row.error}" if row.error and row.status in FAILED else "")
    secs = "-" if row.epoch_seconds is None else f"{row.epoch_seconds:.1f}"
    return (row.label, row.model, status[:60], f"{row.epoch}/{row.epochs}",
            _pct(row.val_top1), _pct(row.test_top1), secs)


def format_view(view: StudyView, finished_rows: bool = True) -> str:
    """The view as plain text: the summary line and a table of trials (running first)."""
    rows = [r for r in view.rows if finished_rows or r.status not in FINISHED]
    table = [COLUMNS] + [row_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [summary_line(view), ""] if rows else [summary_line(view)]
    for cells in table if rows else []:
        lines.append("  ".join(c.rjust(w) if name in NUMERIC else c.ljust(w)
                               for c, w, name in zip(cells, widths, COLUMNS)).rstrip())
    return "\n".join(lines)


def events(old: TrialRecord | None, new: TrialRecord) -> list[tuple[str, str]]:
    """What happened to a trial between two versions of its record, as (kind, text) with
    kind start | epoch | end: its start, each newly finished epoch, its end. Nothing when
    the record did not change, so observing the same record twice prints nothing."""
    label, out = trial_label(new), []
    if old is None:
        resumed = f", resumed after epoch {new.last_epoch}" if new.history else ""
        out.append(("start", f"{label} started ({new.key}{resumed})"))
    seen = old.last_epoch if old else new.last_epoch
    for entry in new.history:
        if entry.epoch > seen:
            val = "" if entry.val_top1 is None else f"val top1 {entry.val_top1:.2f}, "
            out.append(("epoch", f"{label} epoch {entry.epoch}/{new.epochs}: {val}test top1 "
                                 f"{entry.test_top1:.2f} ({entry.epoch_seconds:.1f} s)"))
    if new.status != "running" and (old is None or old.status != new.status):
        last = new.history[-1] if new.history else None
        result = (f", val top1 {_pct(last.val_top1)}, test top1 {_pct(last.test_top1)}"
                  if last else "")
        why = f": {new.error}" if new.error else ""
        out.append(("end", f"{label} {new.status} after {new.last_epoch}/{new.epochs} "
                           f"epochs{result}{why}"))
    return out


def renderable(view: StudyView, finished_rows: bool = True):
    """The view as a `rich` renderable: summary line, table of trials, the ETA's caveat."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=False)
    for name in COLUMNS:
        table.add_column(name, justify="right" if name in NUMERIC else "left")
    for row in view.rows:
        if finished_rows or row.status not in FINISHED:
            table.add_row(*row_cells(row))
    return Group(Text(summary_line(view)), table, Text(ETA_NOTE, style="dim"))


# --- live progress ---

class Tally:
    """What `StudyView.build` sums over every record (counts, epoch times, epochs left,
    GPU-hours), kept up to date one record version at a time: live progress then costs
    the same per event in a study of 1,000 trials as in one of 10, where rebuilding the
    view from all records made a whole study's progress quadratic in its trials."""

    def __init__(self):
        self.records = 0
        self.counts: Counter = Counter()
        self.budget = 0                            # Σ epoch budgets
        self.gpu_hours, self.gpu_records = 0.0, 0
        self.seconds: dict[str, list] = {}         # model → [Σ epoch seconds, epochs]
        self.left: dict[str, tuple[str, int]] = {}  # unfinished: key → (model, epochs left)

    def add(self, record: TrialRecord, sign: int = 1) -> None:
        """Count `record` in (sign 1) or take it out again (sign -1)."""
        self.records += sign
        self.counts[COUNTED_AS[record.status]] += sign
        self.budget += sign * record.epochs
        hours = record.gpu_hours()
        if hours is not None:
            self.gpu_hours += sign * hours
            self.gpu_records += sign
        times = self.seconds.setdefault(record.model, [0.0, 0])
        times[0] += sign * sum(e.epoch_seconds for e in record.history)
        times[1] += sign * len(record.history)
        if record.status not in FINISHED:
            if sign > 0:
                self.left[record.key] = (record.model, record.epochs - record.last_epoch)
            else:
                self.left.pop(record.key, None)

    def view(self, study: str, total: int, rows: list[TrialRow],
             concurrency: int | None = None, elapsed: float | None = None) -> StudyView:
        """The view `StudyView.build` makes of the tallied records, with `rows` only."""
        total = max(total, self.records)
        counts = {k: self.counts.get(k, 0) for k in
                  ("done", "running", "pending", "stopped", "failed", "interrupted")}
        counts["pending"] = total - self.records
        left, seconds, longest, measured = self._remaining(counts["pending"])
        eta = eta_seconds(seconds, longest, counts, total, concurrency)
        return StudyView(study, total, counts, rows, eta,
                         self.gpu_hours if self.gpu_records else None, left, measured, elapsed)

    def _remaining(self, pending: int) -> tuple[int, float | None, float, int]:
        # As `_remaining` computes it from all records.
        measured = sum(n for _, n in self.seconds.values())
        if not measured:
            return 0, None, 0.0, 0
        overall = sum(t for t, _ in self.seconds.values()) / measured
        budget = self.budget / self.records
        mean = {m: t / n if n else overall for m, (t, n) in self.seconds.items()}
        each = [n * mean[m] for m, n in self.left.values()]
        left = sum(n for _, n in self.left.values()) + round(pending * budget)
        return (left, *_seconds_left(each, pending, budget * overall), measured)


class Progress:
    """Follows a running study through its records: call `observe(record)` after every
    record write. Subclasses say how it is shown."""

    def __init__(self, study: str, total: int):
        self.study, self.total = study, total
        self.started = time.monotonic()      # the elapsed time shown counts from here
        self.concurrency: int | None = None   # trials at once, as the driver planned them
        self.records: dict[str, TrialRecord] = {}
        self.unfinished: dict[str, TrialRecord] = {}   # the records not in FINISHED
        self.arms: dict[str, dict[str, TrialRecord]] = {}   # arm label → arm key → a record
        self.tally = Tally()

    def preload(self, records: Iterable[TrialRecord]) -> None:
        """Trials already on disk (a re-run's finished ones): counted, not announced."""
        for record in records:
            self._keep(record)

    def observe(self, record: TrialRecord) -> None:
        old = self.records.get(record.key)
        # A snapshot: the record writer goes on changing the record it passes.
        self._keep(copy.deepcopy(record))
        self.show(events(old, record))

    def _keep(self, record: TrialRecord) -> None:
        old = self.records.get(record.key)
        if old is not None:
            self.tally.add(old, -1)
        self.tally.add(record)
        self.records[record.key] = record
        self.arms.setdefault(arm_label(record), {}).setdefault(record.arm_key, record)
        if record.status in FINISHED:
            self.unfinished.pop(record.key, None)
        else:
            self.unfinished[record.key] = record

    @property
    def view(self) -> StudyView:
        return StudyView.build(self.records.values(), self.total, self.study, self.concurrency,
                               time.monotonic() - self.started)

    @property
    def live_view(self) -> StudyView:
        """The view with the unfinished trials' rows only (what live progress shows), at a
        cost that does not grow with the finished trials."""
        # Tags as `StudyView.build` gives them, from one record per arm of the labels shown.
        labels = {arm_label(r) for r in self.unfinished.values()}
        tags = arm_tags(r for label in labels for r in self.arms[label].values())
        rows = sorted((TrialRow.of(r, distinct_label(r, tags)) for r in self.unfinished.values()),
                      key=lambda row: (row.status != "running", row.label))
        return self.tally.view(self.study, self.total, rows, self.concurrency,
                               time.monotonic() - self.started)

    def show(self, happened: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PlainProgress(Progress):
    """One line per event, `[finished/total] ...`: for pipes, files and job logs."""

    def __init__(self, study: str, total: int, stream: IO[str] | None = None):
        super().__init__(study, total)
        self.stream = stream or sys.stdout
        self.noted = False  # ETA_NOTE printed

    def show(self, happened: list[tuple[str, str]]) -> None:
        if not happened:
            return
        if not self.noted:
            print(f"raysweep: {self.total} trials in study {self.study}; {ETA_NOTE}",
                  file=self.stream, flush=True)
            self.noted = True
        view = self.live_view
        tail = (f" · {view.counts['running']} running · {eta_text(view)} · elapsed "
                f"{duration(view.elapsed_seconds)}")
        for _, text in happened:
            print(f"[{view.finished}/{view.total}] {text}{tail}", file=self.stream, flush=True)


class LiveProgress(Progress):
    """A `rich` live table of the running trials under the summary line; trial starts
    and ends are printed above it as they happen."""

    def __init__(self, study: str, total: int, console=None):
        from rich.console import Console

        super().__init__(study, total)
        self.console = console or Console()
        self.live = None   # started with the first event: until then the terminal is the
                           # run's own (its cost, a question about it)

    def _renderable(self):
        return renderable(self.live_view, finished_rows=False)

    def show(self, happened: list[tuple[str, str]]) -> None:
        if self.live is None:
            from rich.live import Live

            # Refreshed on each record: no refresh thread, nothing to race with Ray's output.
            self.live = Live(self._renderable(), console=self.console, auto_refresh=False,
                             transient=False)
            self.live.start(refresh=True)
        view = self.live_view
        for kind, text in happened:
            if kind != "epoch":  # epochs update the table; starts and ends stay above it
                self.live.console.print(f"[{view.finished}/{view.total}] {text}",
                                        markup=False, highlight=False)
        self.live.update(self._renderable(), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def make_progress(study: str, total: int, stream: IO[str] | None = None,
                  live: bool | None = None) -> Progress:
    """Live display when `stream` (default stdout) is a terminal or `live` is True,
    else plain lines."""
    stream = stream or sys.stdout
    if live is None:
        live = stream.isatty() and os.environ.get("TERM") != "dumb"
    if not live:
        return PlainProgress(study, total, stream)
    from rich.console import Console

    return LiveProgress(study, total, Console(file=stream, force_terminal=True))
