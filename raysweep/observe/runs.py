"""Run folders as a user asks about them, from their records alone (Ray need not run, and
a folder copied from a cluster works):

    status(run_dir) -> StudyView          where a run stands (`raysweep status RUN`)
    watch(run_dir, interval_s)            the same, refreshed until the run is over
    list_runs(storage) -> [RunSummary]    the runs under a storage folder (`raysweep list runs`)
    compare(run_a, run_b) -> Comparison   the arms two runs share, side by side with Δ

Each has a plain-text formatter that the CLI prints.
"""
from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from raysweep.errors import NoRecordsError, RaysweepError
from raysweep.core.labels import arm_tags, distinct_label
from raysweep.observe.progress import StudyView, format_view, renderable
from raysweep.store.records import RECORDS_DIR, read_records
from raysweep.store.storage import what_is
from raysweep.core.trial import TrialRecord

STUDY_FILE = "study.yaml"
SHOW_RUNS = 10  # runs named when a storage folder is given where a run was meant


# --- status ---

def status(run_dir: str | Path) -> StudyView:
    """The run's view: its records, and its study's trial count from study.yaml (the
    record count when study.yaml is missing or unreadable)."""
    run_dir = run_folder(run_dir)
    records = read_records(run_dir)
    last = _last_run(run_dir)
    # A run with trials running now finishes at the pace of the trials it holds at once,
    # and has been going since its latest sitting started; one with none running has
    # neither an ETA nor an elapsed time.
    running = any(r.status == "running" for r in records)
    return StudyView.build(records, study_total(run_dir, last), _study_name(run_dir, records),
                           last.get("max_concurrent") if running else None,
                           _elapsed(last) if running else None)


def run_folder(run_dir: str | Path) -> Path:
    """A run folder named on the command line; a one-line error naming what is there
    instead (nothing, a file, a device, a folder that is no run)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RaysweepError(f"run folder {str(run_dir)!r} {what_is(path)}; allowed: a run "
                            f"folder (<storage>/<run name>, holding {RECORDS_DIR}/ and "
                            f"{STUDY_FILE})")
    if not is_run(path):
        inside = sorted(p.name for p in path.iterdir() if p.is_dir() and is_run(p))
        if inside:  # a storage folder given where one of its runs was meant
            more = f" and {len(inside) - SHOW_RUNS} more" if len(inside) > SHOW_RUNS else ""
            raise NoRecordsError(
                f"{str(run_dir)!r} is a storage folder, not a run; its runs: "
                f"{', '.join(inside[:SHOW_RUNS])}{more}; allowed: one of them, e.g. "
                f"{str(path / inside[0])!r} (raysweep list runs --storage {run_dir})")
        raise NoRecordsError(f"{str(run_dir)!r} is not a raysweep run: it has no "
                             f"{RECORDS_DIR}/ and no {STUDY_FILE}")
    return path


def is_run(path: Path) -> bool:
    return (path / RECORDS_DIR).is_dir() or (path / STUDY_FILE).is_file()


def _last_run(run_dir: Path) -> dict[str, Any]:
    """What the latest run wrote to provenance.json that `status` reads: its counts
    (`trials_total`, `max_concurrent`) when they are whole numbers, and `started_at`
    when it is a time; {} when the file is unreadable."""
    import json

    try:
        entry = json.loads((run_dir / "provenance.json").read_text())["runs"][-1]
        found = {k: entry.get(k) for k in ("trials_total", "max_concurrent", "started_at")}
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {}
    started = found.pop("started_at")
    out = {k: v for k, v in found.items()
           if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    started = _parse(started) if isinstance(started, str) else None
    return {**out, "started_at": started} if started else out


def _elapsed(last_run: dict[str, Any]) -> float | None:
    """Seconds since the latest run started (`_last_run`'s `started_at`); None when no
    run wrote one."""
    started = last_run.get("started_at")
    return (datetime.now(timezone.utc) - started).total_seconds() if started else None


def study_total(run_dir: Path, last_run: dict[str, Any] | None = None) -> int | None:
    """Trials in the run's study.yaml (as its latest run's provenance counted them, or
    by expanding it); None when it is missing or no longer loads (a model since removed
    from the zoo, an older format). `last_run`: `_last_run(run_dir)` when already read."""
    total = (_last_run(run_dir) if last_run is None else last_run).get("trials_total")
    if total is not None:
        return total
    # No provenance, or one written before trials_total: expand study.yaml.
    from raysweep.study.parse import load_study

    path = run_dir / STUDY_FILE
    if not path.is_file():
        return None
    try:
        study = load_study(str(path))
    except (ValueError, OSError):  # every study error is a ValueError
        return None
    return study.total_trials()


def _study_name(run_dir: Path, records: list[TrialRecord]) -> str:
    return records[0].study if records else run_dir.name


def watch(run_dir: str | Path, interval_s: float = 10.0, until_done: bool = True,
          stream: IO[str] | None = None, live: bool | None = None) -> StudyView | None:
    """Show `status(run_dir)` every `interval_s` seconds (in place on a terminal, else one
    block per refresh); return the last view once the run is over (`until_done`) or on
    Ctrl-C. A run whose driver died keeps `running` records: stop watching it with Ctrl-C."""
    stream = stream or sys.stdout
    live = stream.isatty() if live is None else live
    display = view = None
    try:
        while True:
            view = status(run_dir)
            if live:
                display = display or _live(stream)
                display.update(renderable(view), refresh=True)
            else:
                stamp = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
                print(f"--- {stamp}\n{format_view(view)}", file=stream, flush=True)
            if until_done and view.over:
                return view
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return view
    finally:
        if display is not None:
            display.stop()


def _live(stream: IO[str]):
    from rich.console import Console
    from rich.live import Live

    display = Live(console=Console(file=stream, force_terminal=True), auto_refresh=False)
    display.start()
    return display


# --- list runs ---

@dataclass(frozen=True)
class RunSummary:
    name: str                   # the run folder's name (`--name`)
    path: Path
    view: StudyView
    last_activity: datetime | None  # UTC; latest start, finish or running-record write


def list_runs(storage: str | Path) -> list[RunSummary]:
    """Every run folder directly under `storage`, most recently active first."""
    root = Path(storage)
    if not root.is_dir():
        raise RaysweepError(f"storage folder {str(storage)!r} does not exist")
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_run(path):
            records = read_records(path)
            view = StudyView.build(records, study_total(path), _study_name(path, records))
            found.append(RunSummary(path.name, path, view, last_activity(path, records)))
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda r: r.last_activity or oldest, reverse=True)


def last_activity(run_dir: Path, records: list[TrialRecord]) -> datetime | None:
    """The latest time a record says something happened. A running trial's record has
    no per-epoch time, so its file's modification time counts for it."""
    times = []
    for r in records:
        stamps = [r.started_at, r.finished_at, *(s.started_at for s in r.segments)]
        times += [_parse(t) for t in stamps if t]
        if r.status == "running":
            path = run_dir / RECORDS_DIR / f"{r.key}.json"
            times.append(datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
    times = [t for t in times if t is not None]
    return max(times) if times else None


def _parse(stamp: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_runs(runs: list[RunSummary]) -> str:
    if not runs:
        return "no runs (a run folder holds records/ or study.yaml)"
    head = ("run", "study", "trials", "completed", "running", "pending", "stopped", "failed",
            "last activity (UTC)")
    rows = [head] + [
        (r.name, r.view.study, str(r.view.total), *(str(r.view.counts[k]) for k in
         ("done", "running", "pending", "stopped", "failed")),
         r.last_activity.strftime("%Y-%m-%d %H:%M") if r.last_activity else "-")
        for r in runs]
    return _table(rows, left=(0, 1, 8))


def _table(rows: list[tuple[str, ...]], left: tuple[int, ...]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                     for row in rows)


# --- compare ---

@dataclass(frozen=True)
class Side:
    """One run's seeds of an arm: final-epoch top-1 (percent) of its complete seeds."""
    val_top1: dict[int, float]  # by seed; empty when the run has no validation split
    test_top1: dict[int, float]  # by seed
    left_out: int               # seeds not compared: stopped, failed, running, interrupted


@dataclass(frozen=True)
class ArmComparison:
    arm_key: str                # `TrialRecord.arm_key`: identity without the seed
    label: str                  # run A's arm label (B's too, after " / ", where it differs)
    a: Side
    b: Side
    val: Any                    # stats.Comparison of B against A (Δ = B − A), validation top-1
    test: Any                   # the same for test top-1: the tested one (Holm, verdict)
    p_holm: float               # test top-1's p after Holm over the tested arms; NaN untested
    detectable: float           # smallest |Δ test| detected at 80% power (stats.detectable_delta)
    verdict: str                # stats.verdict, as in the ablation tables


@dataclass(frozen=True)
class Comparison:
    run_a: Path
    run_b: Path
    arms: list[ArmComparison]   # arms both runs hold, by label
    only_a: list[str]           # labels of arms only run A holds
    only_b: list[str]

    @property
    def holm_m(self) -> int:
        """Tests in Holm's family: the arms whose test top-1 was tested."""
        return sum(arm.test.tested for arm in self.arms)


def compare(run_a: str | Path, run_b: str | Path) -> Comparison:
    """The arms (same model, options and training values; any seed) both runs hold.
    Only seeds that trained their whole budget are compared, so both sides of a row are
    final-epoch numbers at the same budget on the same split. As in the ablation tables
    (`raysweep.decide.stats`): a paired t-test over the seeds both runs hold (a seed is
    the same data order and augmentation draws), Welch's t-test where fewer than two
    seeds are shared, Holm's correction over the arms tested on test top-1."""
    from raysweep.decide import stats as st

    arms_a, arms_b = _arms(run_a), _arms(run_b)
    tags = arm_tags([r for arms in (arms_a, arms_b) for recs in arms.values() for r in recs])
    name = {k: distinct_label(recs[0], tags, arm=True)
            for arms in (arms_a, arms_b) for k, recs in arms.items()}
    shared = sorted(set(arms_a) & set(arms_b), key=lambda k: name[k])
    sides = {k: (_side(arms_a[k]), _side(arms_b[k])) for k in shared}
    tests = {k: st.compare(b.test_top1, a.test_top1) for k, (a, b) in sides.items()}
    tested = [k for k in shared if tests[k].tested]
    p_holm = dict(zip(tested, st.holm([tests[k].p for k in tested])))
    rows = []
    for k in shared:
        a, b = sides[k]
        p, detectable = p_holm.get(k, st.NAN), st.detectable_delta(tests[k], len(tested))
        rows.append(ArmComparison(
            k, _pair_label(arms_a[k][0], arms_b[k][0], tags), a, b,
            st.compare(b.val_top1, a.val_top1), tests[k], p, detectable,
            st.verdict(tests[k], p, detectable)))
    return Comparison(Path(run_a), Path(run_b), rows,
                      sorted(name[k] for k in set(arms_a) - set(arms_b)),
                      sorted(name[k] for k in set(arms_b) - set(arms_a)))


def _arms(run_dir: str | Path) -> dict[str, list[TrialRecord]]:
    records = read_records(run_folder(run_dir))
    if not records:
        raise NoRecordsError(f"no readable trial records in {Path(run_dir) / RECORDS_DIR}")
    arms = defaultdict(list)
    for r in records:
        arms[r.arm_key].append(r)
    return dict(arms)


def _pair_label(a: TrialRecord, b: TrialRecord, tags: dict[str, str]) -> str:
    la, lb = distinct_label(a, tags, arm=True), distinct_label(b, tags, arm=True)
    return la if la == lb else f"{la} / {lb}"


def _side(records: list[TrialRecord]) -> Side:
    complete = sorted((r for r in records if r.status == "completed" and r.last_epoch == r.epochs),
                      key=lambda r: r.seed)
    last = {r.seed: r.history[-1] for r in complete}
    return Side({s: e.val_top1 for s, e in last.items() if e.val_top1 is not None},
                {s: e.test_top1 for s, e in last.items()}, len(records) - len(complete))


def format_comparison(c: Comparison) -> str:
    from raysweep.decide.stats import mean_std
    from raysweep.results.table import fmt_mean, fmt_p

    head = ("arm", "val top1 A", "val top1 B", "Δ val (B−A, 95% CI)", "test top1 A",
            "test top1 B", "Δ test (B−A, 95% CI)", "test", "p", "p (Holm)", "left out A/B",
            "verdict")
    rows = [head] + [(r.label, fmt_mean(*mean_std(list(r.a.val_top1.values()))),
                      fmt_mean(*mean_std(list(r.b.val_top1.values()))), _delta(r.val),
                      fmt_mean(*mean_std(list(r.a.test_top1.values()))),
                      fmt_mean(*mean_std(list(r.b.test_top1.values()))), _delta(r.test),
                      _test_name(r.test), fmt_p(r.test.p), fmt_p(r.p_holm),
                      f"{r.a.left_out}/{r.b.left_out}", r.verdict)
                     for r in c.arms]
    lines = [f"A: {c.run_a}", f"B: {c.run_b}", ""]
    if c.arms:
        lines.append(_table(rows, left=(0, 7, 11)))
    else:
        lines.append("no arm in common (an arm is a model, its options and every training "
                     "value but the seed)")
    lines += ["", *COMPARE_NOTES,
              f"p (Holm): Holm's correction over the m = {c.holm_m} arms tested on test top-1; "
              "'not significant' does not show that the runs agree: '|Δ| ≥ d' is the smallest "
              "difference these seeds detect with 80% power at the observed spread and α/m."]
    for name, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            lines.append(f"only in {name} ({len(only)}): {', '.join(only)}")
    return "\n".join(lines)


COMPARE_NOTES = (
    "top-1 in percent at the last epoch, mean ± std over the seeds that trained their whole "
    "budget (n); left out: seeds stopped, failed or unfinished.",
    "Δ = B − A (points). Paired t-test over the seeds both runs hold (same seed: same data "
    "order and augmentation draws): Δ is the mean of the per-seed differences and 95% CI "
    "its t interval; seeds only one run holds are in its mean, not in the paired Δ. Where "
    "fewer than 2 seeds are shared: Welch's t-test on the two sides' seeds (Δ = difference "
    "of the means).",
)


def _test_name(c) -> str:
    if not c.tested:
        return ""   # the verdict says why
    return f"paired t (n={c.n_pairs})" if c.test == "paired t" else c.test


def _delta(c) -> str:
    from raysweep.results.table import fmt_signed

    if math.isnan(c.ci_low):
        return fmt_signed(c.delta)
    return f"{fmt_signed(c.delta)} [{fmt_signed(c.ci_low)}, {fmt_signed(c.ci_high)}]"
