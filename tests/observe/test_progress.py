"""Live progress: the rich display on a (forced) terminal, plain lines elsewhere, the ETA;
and a tiny study run by the real CLI in a pseudo-terminal."""
from __future__ import annotations

import dataclasses
import io
import re
import sys

import pytest
from rich.console import Console

from raysweep.observe.progress import LiveProgress, StudyView, make_progress, summary_line
from support.factories import record, spec
from support.terminal import run_in_pty

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _trial(seed: int, variant: str | None = None, model: str = "resnet_20",
           train: dict | None = None, **fields):
    return record(spec(model, seed=seed, group="demo", variant=variant, **(train or {})),
                  **fields)


def _stages(final):
    """The versions of one record that the record writer writes: at start, after each
    epoch, at the end."""
    running = dataclasses.replace(final, status="running", finished_at=None,
                                  stopped_at_epoch=None)
    yield dataclasses.replace(running, history=[])
    for n in range(1, len(final.history) + 1):
        yield dataclasses.replace(running, history=final.history[:n])
    yield final


def test_live_display_names_the_running_trials_and_counts():
    out = io.StringIO()
    progress = LiveProgress("demo", 4, Console(file=out, force_terminal=True, width=200))
    done = _trial(0, top1=[40.0, 45.0, 50.0])
    stopped = _trial(0, "deeper", "resnet_32", status="stopped", top1=[10.0])
    running = _trial(1, status="running", top1=[41.5])
    for r in [*_stages(done), *_stages(stopped), *list(_stages(running))[:2]]:
        progress.observe(r)
    progress.close()
    text = ANSI.sub("", out.getvalue())
    final = text[text.rindex("study demo:"):]   # the last frame of the live display
    assert "2/4 finished (1 completed, 1 stopped, 0 failed) · 1 running · 1 pending" in final
    assert "demo.baseline-s1" in final and "41.50" in final and "1/3" in final
    assert "ETA ≤ " in final and "ASHA stops shorten it" in final
    assert "demo.baseline-s0" not in final     # finished trials leave the table...
    assert "[1/4] demo.baseline-s0 completed after 3/3 epochs" in text   # ...logged above it
    assert "[2/4] demo.deeper-s0 stopped after 1/3 epochs" in text


def test_plain_lines_count_trials_and_never_show_tune_ids():
    out = io.StringIO()           # not a terminal: plain lines
    progress = make_progress("demo", 3, stream=out)
    progress.preload([_trial(5, top1=[1.0, 2.0], train={"epochs": 2})])  # finished earlier
    final = _trial(0, top1=[40.0, 45.0], train={"epochs": 2}, trial_ids=["020f6_00001"])
    for r in _stages(final):
        progress.observe(r)
        progress.observe(r)       # the same record again prints nothing
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("raysweep: 3 trials in study demo; ETA: full epoch budgets")
    assert [line.split(" · ")[0] for line in lines[1:]] == [
        f"[1/3] demo.baseline-s0 started ({final.key})",
        "[1/3] demo.baseline-s0 epoch 1/2: val top1 40.00, test top1 40.00 (10.0 s)",
        "[1/3] demo.baseline-s0 epoch 2/2: val top1 45.00, test top1 45.00 (10.0 s)",
        "[2/3] demo.baseline-s0 completed after 2/2 epochs, val top1 45.00, test top1 45.00",
    ]
    assert "1 running · ETA ≤ 30s (from 3 epochs)" in lines[2]   # (1 + 1 pending × 2) × 10 s
    assert "020f6" not in out.getvalue()


def test_progress_shows_the_time_elapsed_since_the_run_started():
    out = io.StringIO()
    progress = make_progress("demo", 2, stream=out)
    progress.started -= 3 * 3600 + 7 * 60      # as if the run had started 3h07m ago
    progress.observe(_trial(0, status="running", top1=[40.0]))
    assert out.getvalue().splitlines()[-1].endswith(" · elapsed 3h07m")   # plain lines
    assert " · elapsed 3h07m · " in summary_line(progress.live_view)      # live, status


def test_eta_is_full_budgets_at_measured_epoch_times_over_running_trials():
    fast = _trial(0, status="running", top1=[40.0])                       # 10 s epochs
    slow = record(spec("resnet_32", seed=0), status="running", top1=[30.0])
    slow.history[0].epoch_seconds = 30.0
    view = StudyView.build([fast, slow], total=4)
    # resnet_20: 2 epochs × 10 s; resnet_32: 2 × 30 s; 2 pending trials × 3 epochs × the
    # mean epoch (20 s); over the 2 running trials.
    assert view.eta_seconds == pytest.approx((2 * 10 + 2 * 30 + 2 * 3 * 20) / 2)
    assert view.epochs_left == 10 and view.counts["pending"] == 2
    assert StudyView.build([_trial(0, status="running", top1=[])], 2).eta_seconds is None


def _replay(trials: int, lanes: int, epochs: int, offset: float):
    """The record versions a run of `trials` equal trials (10 s epochs) writes with `lanes`
    trials at once, lane k starting `k * offset` seconds late, in the order they happen:
    (time, record version). A lane starts its next trial as soon as one completes."""
    finals = [_trial(seed, top1=[50.0] * epochs, train={"epochs": epochs})
              for seed in range(trials)]
    events, queue = [], list(finals)
    for lane in range(lanes):
        t = lane * offset
        for final in queue[lane::lanes]:
            versions = list(_stages(final))
            events.append((t, 0, versions[0]))
            events += [(t + 10.0 * n, 1, v) for n, v in enumerate(versions[1:-1], 1)]
            t += 10.0 * epochs
            events.append((t, 2, versions[-1]))
    return [record for _, _, record in sorted(events, key=lambda e: (e[0], e[1]))]


def test_the_eta_of_a_replayed_run_never_rises_when_a_trial_finishes_on_time():
    """Every epoch takes the 10 s measured so far, so each trial that ends ends on time:
    the ETA must not rise then. Over the trials running (the old divisor) it doubled
    whenever a trial ended before the next started."""
    def etas(concurrency):
        progress = make_progress("demo", 5, stream=io.StringIO())
        progress.concurrency = concurrency
        seen = []
        for version in _replay(trials=5, lanes=2, epochs=3, offset=5.0):
            progress.observe(version)
            seen.append((version.status, progress.live_view.eta_seconds))
        return seen

    seen = etas(concurrency=2)
    ends = [(before, after) for (_, before), (status, after) in zip(seen, seen[1:])
            if status == "completed" and before is not None]
    assert len(ends) == 5 and ends[-1][1] is None   # the last one ends the study
    assert all(after <= before for before, after in ends[:-1]), seen
    # Once the first epoch is measured: 5 trials × 3 epochs less that one, at 10 s each,
    # over the 2 lanes.
    first = next(eta for _, eta in seen if eta is not None)
    assert first == pytest.approx((5 * 3 - 1) * 10.0 / 2)
    old = etas(concurrency=None)
    assert any(after > before for (_, before), (s, after) in zip(old, old[1:])
               if s == "completed" and before is not None and after is not None)


def test_the_eta_is_never_shorter_than_the_longest_trial_left():
    long_ = _trial(0, status="running", top1=[40.0], train={"epochs": 10})   # 9 × 10 s left
    short = _trial(1, top1=[40.0, 41.0])
    view = StudyView.build([long_, short], total=2, concurrency=4)
    assert view.eta_seconds == pytest.approx(90.0)


def test_gpu_hours_add_up_over_trials_and_say_when_no_gpu_was_used():
    gpu = _trial(0, top1=[40.0, 45.0, 50.0])
    gpu.segments[0].gpus_per_worker, gpu.segments[0].workers = 0.5, 2   # 1 GPU × 30 s
    assert StudyView.build([gpu, _trial(1)], 2).gpu_hours == pytest.approx(30 / 3600)
    assert StudyView.build([_trial(1)], 2).gpu_hours is None


@pytest.mark.slow
def test_a_tiny_study_in_a_terminal_shows_trials_and_counts(tmp_path, join_ray):
    from support.studies import TINY, write_study

    study = write_study(tmp_path, "tty", defaults={**TINY, "epochs": 1},
                        models=["resnet_20"], seeds=2, asha={"enabled": False})
    text, _ = run_in_pty([sys.executable, "-m", "raysweep.cli", "run", str(study), *join_ray,
                          "--storage", str(tmp_path / "runs")], timeout=300,
                         unset=("RAY_AUTH_MODE",))
    text = ANSI.sub("", text)
    assert "resnet_20-s0" in text and "resnet_20-s1" in text
    assert "2/2 finished" in text
    assert re.search(r"\[[12]/2\] resnet_20-s[01] completed after 1/1 epochs", text)
    # A quiet terminal: Ray's own warnings (here: token authentication turned on for the
    # Ray it joins, from a shell without RAY_AUTH_MODE) are in the run's log, which the
    # first line names.
    log = tmp_path / "runs" / "tty" / "raysweep.log"
    assert text.splitlines()[0].strip().endswith(f"at {log}")
    warning = "is enabled for this Ray cluster"   # (the log's redactor masks "Token ...")
    assert warning not in text and warning in log.read_text()
