"""Trial records: one JSON file per trial (`raysweep.core.trial.TrialRecord`), the only thing
the results layer reads.

Layout of a run folder (``<storage>/<run name>/``)::

    study.yaml            the resolved study that produced the run
    provenance.json       git commit, versions, hardware, command line (credentials removed)
    records/<key>.json    one TrialRecord per trial (its fields and units: raysweep/core/trial.py)
    checkpoints/<key>/    the trial's latest intact checkpoints (raysweep.store.checkpoints)
    tune/, train/         Ray Tune's and Ray Train's own files

Records are written atomically (temp file, fsync, rename) so a crash never leaves a
half-written record; readers skip and name a file that is not a valid record of this
version (unreadable JSON, a missing field, another record_version) instead of failing.

A run folder may also live behind a URI: it is then a `RemotePath` (store/storage.py),
written object by object (an object store replaces an object whole, so a reader never
sees half a record).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from raysweep.core.trial import OLD_VERSIONS, RECORD_VERSION, TrialRecord, record_version
from raysweep.errors import RecordError, StudyError
from raysweep.store.storage import RemotePath, _location, atomic_write_text


RECORDS_DIR = "records"


def write_record(run_dir: Path | RemotePath, record: TrialRecord) -> Path | RemotePath:
    path = _location(run_dir) / RECORDS_DIR / f"{record.key}.json"
    atomic_write_text(path, json.dumps(record.to_dict(), indent=1, sort_keys=True, allow_nan=False))
    return path


def read_records(run_dir: Path | RemotePath) -> list[TrialRecord]:
    """All valid records of a run, sorted by key; other files are named and skipped."""
    found = (_read(path) for path in sorted((_location(run_dir) / RECORDS_DIR).glob("*.json")))
    return [r for r in found if r is not None]


def read_record(run_dir: Path | RemotePath, key: str) -> TrialRecord | None:
    path = _location(run_dir) / RECORDS_DIR / f"{key}.json"
    return _read(path) if path.is_file() else None


def refuse_other_versions(run_dir: Path | RemotePath) -> None:
    """A run folder holding records of another record version cannot be continued: its
    trials would be compared with ones that are not the same experiment."""
    folder = _location(run_dir) / RECORDS_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            version = record_version(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # not a record at all: skipped (and named) by the readers
        if version is not None and version != RECORD_VERSION:
            why = OLD_VERSIONS.get(version, "an unknown version")
            raise RecordError(f"run folder {_location(run_dir)} holds records of record_version "
                              f"{version} ({path.name}: {why}); this raysweep writes version "
                              f"{RECORD_VERSION}: run the study under a new --name")


def load_record(path: Path | RemotePath) -> TrialRecord:
    """One record file; a RecordError (one line naming the file) if it is not valid."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable record: {exc}") from None
    return TrialRecord.from_dict(data, where=str(path))


def _read(path: Path | RemotePath) -> TrialRecord | None:
    try:
        return load_record(path)
    except RecordError as exc:
        warnings.warn(f"skipping {exc}", stacklevel=3)
        return None


def check_writable(run_dir: Path | RemotePath) -> None:
    """The run folder can be made and written (checked before Ray starts)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StudyError(f"storage path {str(run_dir)!r} is not writable: "
                         f"{exc.strerror or exc}") from None
