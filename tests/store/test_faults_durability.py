"""Durability: records and tables are written atomically; a full disk fails a write in
one line and leaves the old file whole; a file in records/ that is not a valid record
(broken JSON, or valid JSON that is not a record) is named and skipped by every reader.
(`report` leaving records byte-identical is in test_results.py.)"""
from __future__ import annotations

import json
import subprocess

import pytest

from support import factories
from support.studies import TINY, write_study
from support.cli import raysweep
from raysweep.store import records, storage
from raysweep.errors import StorageFullError
from raysweep.store.records import read_records


def _with_epoch(**values) -> dict:
    data = factories.record().to_dict()
    data["history"][0].update(values)
    return data


@pytest.mark.parametrize("text, why", [
    ('{"key": "m-2", "hist', "unreadable record"),
    ('{"record_version": 3, "key": "m-2", "history": []}', "missing field"),
    (json.dumps({**factories.record().to_dict(), "history": "nope"}), "history must be a list"),
    (json.dumps({k: v for k, v in factories.record().to_dict().items() if k != "status"}),
     "missing field 'status'"),
    ("[1, 2]", "not a trial record"),
    # The values are checked against their fields' types, also where a value of the
    # right type is taken as it is.
    (json.dumps({**factories.record().to_dict(), "params": True}), "params must be an integer"),
    (json.dumps({**factories.record().to_dict(), "params": 1.5}), "params must be an integer"),
    (json.dumps({**factories.record().to_dict(), "unknown": 1}), "unknown field 'unknown'"),
    (json.dumps(_with_epoch(val_top1="high")), r"history\[0\].val_top1 must be a number"),
    (json.dumps(_with_epoch(epoch=None)), r"history\[0\].epoch must be an integer")])
def test_a_file_that_is_not_a_valid_record_is_named_and_skipped(tmp_path, text, why):
    good = factories.record()
    records.write_record(tmp_path, good)
    (tmp_path / "records" / "m-2.json").write_text(text)
    with pytest.warns(UserWarning, match=f"m-2.json.*{why}"):
        assert read_records(tmp_path) == [good]


@pytest.mark.slow
def test_report_and_resume_skip_a_malformed_record_in_one_warning_line(smoke_run_dir, tmp_path):
    run_dir = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(smoke_run_dir), str(run_dir)], check=True)
    (run_dir / "records" / "resnet_20-broken.json").write_text(
        '{"record_version": 3, "key": "resnet_20-broken", "model": "resnet_20"}')
    report = raysweep("report", run_dir, "--out", tmp_path / "report", timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    [warning] = [ln for ln in report.stderr.splitlines() if "resnet_20-broken.json" in ln]
    assert warning.startswith("raysweep: warning: skipping ") and "missing field" in warning


def test_a_full_disk_fails_a_record_write_in_one_line_and_keeps_the_old_record(small_disk):
    disk = small_disk
    old = factories.record(status="running")
    records.write_record(disk, old)
    big = factories.record(top1=[50.0] * 2000)  # a record too big for what is left
    with pytest.raises(StorageFullError) as err:
        records.write_record(disk, big)
    assert str(err.value).startswith(f"no space left on the device of {disk / 'records'}")
    assert "\n" not in str(err.value)
    # the old record is whole and no temporary file is left behind
    assert read_records(disk) == [old]
    assert [p.name for p in (disk / "records").iterdir()] == [f"{old.key}.json"]


def test_a_study_file_is_written_whole_or_not_at_all(tmp_path):
    path = write_study(tmp_path, "w", defaults=TINY, models=["resnet_20"])
    storage.atomic_write_text(tmp_path / "copy.yaml", path.read_text())
    assert (tmp_path / "copy.yaml").read_text() == path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.yaml", "w.yaml"]
