"""The worker→driver report (raysweep.core.report): what every producer sends is what
the record writer and the rungs read back, field for field."""
from __future__ import annotations

import dataclasses

from raysweep.core.report import Report, decode, encode, first_report
from support.factories import epoch, segment


def test_a_report_survives_tune_s_result_dict():
    plain = Report(epoch(3, val_top1=None))
    first = first_report(epoch(2), [segment(), segment(first_epoch=2)], [epoch(1)], 278_324, 81)
    for report in (plain, first):
        assert decode(encode(report)) == report


def test_the_scalars_tune_reads_sit_beside_the_report_and_none_is_left_out():
    metrics = encode(Report(epoch(4, val_top1=None)))
    assert metrics["epoch"] == 4 and metrics["test_top1"] == 50.0
    assert "val_top1" not in metrics and "raysweep_segments" not in metrics


def test_a_first_report_sends_only_the_epochs_before_its_own():
    """A finished trial reports its last epoch again with its whole history: the epoch
    reported is not also in the history (both producers sent it differently before)."""
    history = [epoch(1), epoch(2), epoch(3)]
    report = first_report(history[-1], [segment()], history, None, None)
    assert [h.epoch for h in report.launched.history] == [1, 2]
    assert decode(encode(report)).launched.history == tuple(history[:2])


def test_a_result_no_trial_sent_decodes_to_none():
    assert decode({"epoch": 1, "val_top1": 3.0}) is None


def test_every_epoch_and_segment_field_travels():
    full = dataclasses.replace(segment(), skipped_checkpoints=["epoch_0002: bad sha256"],
                               fused_members=3, precision="bf16")
    report = first_report(epoch(5, segment=1), [full], [epoch(4)], 1, 2)
    back = decode(encode(report))
    assert back.launched.segments[0] == full
    assert dataclasses.asdict(back.result) == dataclasses.asdict(report.result)
