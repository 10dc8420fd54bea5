"""Live progress at the cost of one record per event: the running tally gives the view
that rebuilding it from every record gives, at every step of a study."""
from __future__ import annotations

import dataclasses
import io
import random

import pytest

from support.factories import epoch, record, segment, spec
from raysweep.observe.progress import PlainProgress, StudyView, TrialRow


def _versions(rng: random.Random, seed: int):
    """The versions of one trial's record the record writer writes (start, epochs, end),
    with models, budgets, GPU shares, epoch times and ends that differ between trials."""
    model = rng.choice(["resnet_20", "resnet_32", "resnet_56"])
    budget = rng.randint(1, 4)
    final = record(spec(model, seed=seed, group="g", variant=None, epochs=budget),
                   top1=[float(rng.randint(1, 99)) for _ in range(budget)])
    final.segments = [segment(gpus_per_worker=rng.choice([0.0, 0.25, 1.0]))]
    final.history = [epoch(n, epoch_seconds=rng.uniform(0.5, 20.0)) for n in range(1, budget + 1)]
    end = rng.choice(["completed", "completed", "stopped", "diverged", "errored", "interrupted"])
    reached = budget if end == "completed" else rng.randint(0, budget)
    running = dataclasses.replace(final, status="running", finished_at=None)
    yield dataclasses.replace(running, history=[])
    for n in range(1, reached + 1):
        yield dataclasses.replace(running, history=final.history[:n])
    yield dataclasses.replace(final, status=end, history=final.history[:reached])


def test_the_tallied_view_equals_the_view_built_from_every_record():
    rng = random.Random(7)
    total = 40
    finished_before = [record(spec("resnet_20", seed=100 + i, group="g", variant=None),
                              top1=[50.0, 60.0, 70.0]) for i in range(3)]
    progress = PlainProgress("scale", total, io.StringIO())
    progress.preload(finished_before)
    streams = [list(_versions(rng, seed)) for seed in range(30)]
    checked = 0
    while any(streams):   # trials interleaved as concurrent trials report
        stream = rng.choice([s for s in streams if s])
        progress.observe(stream.pop(0))
        full = StudyView.build(progress.records.values(), total, "scale")
        live = progress.live_view
        assert live.counts == full.counts and live.total == full.total
        assert live.epochs_left == full.epochs_left
        assert live.measured_epochs == full.measured_epochs
        for name in ("eta_seconds", "gpu_hours"):
            mine, built = getattr(live, name), getattr(full, name)
            assert (mine is None) == (built is None), name
            assert built is None or mine == pytest.approx(built, rel=1e-9, abs=1e-9), name
        assert live.rows == [r for r in full.rows if r.status not in
                             ("completed", "stopped", "diverged")]
        checked += 1
    assert checked > 60 and progress.live_view.counts["running"] == 0


def test_a_view_row_is_made_only_for_unfinished_trials(monkeypatch):
    """The cost of an event does not grow with the finished trials: their rows are not
    built again."""
    progress = PlainProgress("scale", 1000, io.StringIO())
    progress.preload(record(spec("resnet_20", seed=s, group="g", variant=None))
                     for s in range(1000))
    made = []
    original = TrialRow.of.__func__
    monkeypatch.setattr(TrialRow, "of", classmethod(lambda cls, r, *label: made.append(r) or
                                                    original(cls, r, *label)))
    running = record(spec("resnet_20", seed=5000, group="g", variant=None), status="running")
    progress.observe(running)
    assert len(made) == 1
