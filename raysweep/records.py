"""Trial records: one JSON file per trial, the only thing the results layer reads.

Layout of a run folder (``<storage>/<study name>/``)::

    study.yaml            the resolved study that produced the run
    provenance.json       git commit, versions, hardware, command line
    records/<key>.json    one record per trial (schema below)
    <Tune experiment files and per-trial Train folders with checkpoints>

A record (all accuracies in percent, times in seconds)::

    key            trial identity: "<model>-<hash of the resolved trial config>"
    trial_id       Ray Tune's trial id (changes across resumes; key does not)
    study, group, variant, baseline (bool), model, model_options, seed
    config         the fully resolved trial config (recipe values filled in)
    family, innovation, params, flops     from the model registry
    status         "running" | "completed" | "stopped" | "errored" | "diverged"
    stopped_at_epoch   last epoch of a trial ASHA stopped or that diverged, else null
    error          error text for errored/diverged trials, else null
    epochs         the epoch budget of the trial
    history        [{epoch, train_loss, val_loss, top1, top5, lr, epoch_seconds,
                     images_per_s}, ...] one entry per finished epoch, rank 0's numbers
    workers, gpus_per_worker, device, hosts
    restarts       how often Train restarted the worker group
    started_at, finished_at   ISO-8601 UTC

Records are written atomically (temp file, fsync, rename) so a crash never leaves a
half-written record; readers skip and name a corrupt file instead of failing.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

STATUSES = ("running", "completed", "stopped", "errored", "diverged")
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "top1", "top5", "lr", "epoch_seconds",
                "images_per_s")
RECORDS_DIR = "records"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status {record.get('status')!r} not in {STATUSES}")
    path = Path(run_dir) / RECORDS_DIR / f"{record['key']}.json"
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
    return path


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """All readable records of a run, sorted by key; corrupt files are named and skipped."""
    found = (_read(path) for path in sorted((Path(run_dir) / RECORDS_DIR).glob("*.json")))
    return [r for r in found if r is not None]


def read_record(run_dir: Path, key: str) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORDS_DIR / f"{key}.json"
    return _read(path) if path.is_file() else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or "key" not in rec or "history" not in rec:
            raise ValueError("not a raysweep trial record")
    except (OSError, ValueError) as exc:
        warnings.warn(f"skipping unreadable record {path}: {exc}", stacklevel=3)
        return None
    return rec


def last_epoch(record: dict[str, Any]) -> int:
    return record["history"][-1]["epoch"] if record["history"] else 0
