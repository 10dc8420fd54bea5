"""Durability: records and tables are written atomically, and a truncated or corrupt
record is named and skipped, never a crash. (`report` leaving records byte-identical is
in test_results.py.)"""
from __future__ import annotations

import json

import pytest

from raysweep import records
from raysweep.records import read_records


def test_corrupt_record_is_named_and_skipped(tmp_path):
    good = {"key": "m-1", "status": "completed", "history": []}
    records.write_record(tmp_path, good)
    (tmp_path / "records" / "m-2.json").write_text('{"key": "m-2", "hist')
    with pytest.warns(UserWarning, match="m-2.json"):
        assert read_records(tmp_path) == [good]


def test_record_writes_are_atomic(tmp_path, monkeypatch):
    records.write_record(tmp_path, {"key": "k", "status": "running", "history": []})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", disk_full)
    with pytest.raises(OSError):
        records.write_record(tmp_path, {"key": "k", "status": "completed", "history": [1]})
    # the old record is whole and no temporary file is left behind
    assert json.loads((tmp_path / "records" / "k.json").read_text())["status"] == "running"
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["k.json"]
