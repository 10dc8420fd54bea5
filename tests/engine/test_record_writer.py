"""RecordWriter without Ray: fake Tune trials and results (built with the real report
encoder) walk it through every status a record can take, and the file on disk is read
back after each step."""
from __future__ import annotations

import dataclasses
import warnings

import pytest

from raysweep.core.report import Report, encode, first_report
from raysweep.engine.record_writer import RecordWriter
from raysweep.store.records import read_record, write_record
from support.factories import epoch, record, segment, spec


@dataclasses.dataclass
class FakeTrial:
    """The attributes of a Tune trial the writer reads."""
    trial_id: str
    config: dict
    error_file: str | None = None
    error_msg: str | None = None


@pytest.fixture
def trials():
    specs = {name: spec(model, seed=seed, epochs=3) for name, model, seed in
             (("a", "resnet_20", 0), ("b", "resnet_20", 1), ("c", "resnet_32", 0))}
    return specs


def writer_for(tmp_path, specs, seen=None):
    return RecordWriter(tmp_path, lambda config: specs[config["name"]],
                        observers=[lambda r: seen.append(r.status)] if seen is not None else [])


def first(n, history=(), segments=None):
    return encode(first_report(epoch(n), segments or [segment(first_epoch=n)], list(history),
                               278_324, 81_637_888))


def on_disk(tmp_path, trial_spec):
    return read_record(tmp_path, trial_spec.key)


def test_running_then_completed(tmp_path, trials):
    seen = []
    writer, trial = writer_for(tmp_path, trials, seen), FakeTrial("t1", {"name": "a"})
    writer.on_trial_start(0, [], trial)
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "running" and r.trial_ids == ["t1"] and r.history == []
    writer.on_trial_result(0, [], trial, first(1))
    r = on_disk(tmp_path, trials["a"])
    assert [h.epoch for h in r.history] == [1] and (r.params, r.flops) == (278_324, 81_637_888)
    for n in (2, 3):
        writer.on_trial_result(0, [], trial, encode(Report(epoch(n))))
    writer.on_trial_complete(0, [], trial)
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "completed" and r.stopped_at_epoch is None and r.finished_at
    assert [h.epoch for h in r.history] == [1, 2, 3] and r.restarts == 0
    assert seen == ["running", "running", "running", "running", "completed"]
    assert trial.trial_id not in writer.open


def test_stopped_before_its_budget(tmp_path, trials):
    writer, trial = writer_for(tmp_path, trials), FakeTrial("t2", {"name": "b"})
    writer.on_trial_start(0, [], trial)
    writer.on_trial_result(0, [], trial, first(1))
    writer.on_trial_complete(0, [], trial)
    r = on_disk(tmp_path, trials["b"])
    assert r.status == "stopped" and r.stopped_at_epoch == 1


def test_diverged_stays_diverged_when_tune_completes_it(tmp_path, trials):
    writer, trial = writer_for(tmp_path, trials), FakeTrial("t3", {"name": "a"})
    writer.on_trial_start(0, [], trial)
    writer.on_trial_result(0, [], trial, first(1))
    writer.on_trial_result(0, [], trial, encode(Report(epoch(2, train_loss=None))))
    assert on_disk(tmp_path, trials["a"]).status == "diverged"
    writer.on_trial_complete(0, [], trial)
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "diverged" and r.stopped_at_epoch == 2
    assert r.error == "non-finite training loss at epoch 2"


def test_errored_keeps_its_last_line_and_a_redacted_traceback(tmp_path, trials):
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  boom\n"
                     "RuntimeError: token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 failed\n")
    writer = writer_for(tmp_path, trials)
    trial = FakeTrial("t4", {"name": "c"}, error_file=str(error))
    writer.on_trial_start(0, [], trial)
    writer.on_trial_error(0, [], trial)
    r = on_disk(tmp_path, trials["c"])
    assert r.status == "errored" and r.error.startswith("RuntimeError: token=***")
    assert "ghp_" not in r.traceback and "boom" in r.traceback


def test_interrupted_then_resumed_from_its_checkpoint(tmp_path, trials):
    writer, trial = writer_for(tmp_path, trials), FakeTrial("t5", {"name": "a"})
    writer.on_trial_start(0, [], trial)
    writer.on_trial_result(0, [], trial, first(1))
    assert [r.status for r in writer.interrupt_open()] == ["interrupted"]
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "interrupted" and r.stopped_at_epoch == 1 and not writer.open

    # The next run: the same record, running again; epoch 2 came from a launch whose
    # checkpoint held epoch 1 (the first report of a launch carries it).
    again, trial = writer_for(tmp_path, trials), FakeTrial("t6", {"name": "a"})
    again.on_trial_start(0, [], trial)
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "running" and r.finished_at is None and r.trial_ids == ["t5", "t6"]
    segments = [segment(), segment(first_epoch=2)]
    again.on_trial_result(0, [], trial, first(2, history=[epoch(1)], segments=segments))
    again.on_trial_result(0, [], trial, encode(Report(epoch(3))))
    again.on_trial_complete(0, [], trial)
    r = on_disk(tmp_path, trials["a"])
    assert r.status == "completed" and [h.epoch for h in r.history] == [1, 2, 3]
    assert r.restarts == 1 and len(r.segments) == 2


def test_a_launch_that_passed_over_a_damaged_checkpoint_warns_once(tmp_path, trials):
    writer, trial = writer_for(tmp_path, trials), FakeTrial("t7", {"name": "b"})
    writer.on_trial_start(0, [], trial)
    damaged = dataclasses.replace(segment(), skipped_checkpoints=["epoch_0002: bad sha256"])
    with pytest.warns(UserWarning, match="epoch_0002: bad sha256"):
        writer.on_trial_result(0, [], trial, first(1, segments=[damaged]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.on_trial_result(0, [], trial, encode(Report(epoch(2))))


def test_a_finished_search_sample_drawn_again_is_replayed_untouched(tmp_path, trials):
    drawn = dataclasses.replace(trials["c"], sampled_from="space-key", sample=1)
    done = record(drawn, status="completed")
    write_record(tmp_path, done)
    writer, trial = writer_for(tmp_path, {"c": drawn}), FakeTrial("t8", {"name": "c"})
    writer.on_trial_start(0, [], trial)
    for h in done.history:
        writer.on_trial_result(0, [], trial, encode(Report(h)))
    writer.on_trial_complete(0, [], trial)
    assert read_record(tmp_path, drawn.key) == done and not writer.open
