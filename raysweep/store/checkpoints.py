"""Trial checkpoints, kept by raysweep itself in the run folder:

    <run>/checkpoints/<trial key>/epoch_0007/state.pt       model, optimizer, schedule, history
    <run>/checkpoints/<trial key>/epoch_0007/complete.json  {epoch, bytes, sha256}: written last

Found by the trial's key alone, so a trial continues from its checkpoint whichever runner
(inline or a Train worker group), worker count or node picks it up, after a worker
restart, a killed driver or a lost node. `state.pt` is written atomically and
`complete.json` after it, so a folder without the marker is an interrupted save; a
checkpoint is chosen by the epoch it holds, never by file times (a copied run folder
resumes from the right epoch), and one whose bytes do not match its marker or that does
not load is named in a warning and skipped for the next older one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from raysweep.core.trial import EpochResult, Segment
from raysweep.errors import CheckpointError
from raysweep.store.storage import RemotePath, atomic_write_bytes, atomic_write_text

CHECKPOINT_FILE = "state.pt"
MARKER_FILE = "complete.json"
CHECKPOINT_FORMAT = "raysweep-checkpoint-v2"
KEEP = 2   # intact checkpoints kept per trial: the newest, and one to fall back on
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")

Location = Path | RemotePath


def trial_state(model_state: dict[str, Any], history, segments) -> dict[str, Any]:
    """What a trial's checkpoint holds: its model, optimizer and schedule (`model_state`),
    and the epochs and segments so far, so a resumed trial reports them again."""
    return {**model_state, "history": [dataclasses.asdict(h) for h in history],
            "segments": [dataclasses.asdict(s) for s in segments]}


def trial_progress(state: dict[str, Any]) -> tuple[list[EpochResult], list[Segment]]:
    """The epochs and segments a checkpoint of `trial_state` holds."""
    return ([EpochResult(**h) for h in state["history"]],
            [Segment(**s) for s in state["segments"]])


def trial_folder(run_dir: Location, key: str) -> Location:
    return run_dir / "checkpoints" / key


def save(run_dir: Location, key: str, epoch: int, state: dict[str, Any]) -> Location:
    """Write epoch `epoch`'s checkpoint of trial `key`, then drop older ones past KEEP."""
    buffer = io.BytesIO()
    torch.save({**state, "format": CHECKPOINT_FORMAT, "epoch": epoch, "key": key}, buffer)
    data = buffer.getvalue()
    folder = trial_folder(run_dir, key) / f"epoch_{epoch:04d}"
    atomic_write_bytes(folder / CHECKPOINT_FILE, data)
    marker = {"epoch": epoch, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_text(folder / MARKER_FILE, json.dumps(marker))
    for old in _epoch_folders(trial_folder(run_dir, key))[KEEP:]:
        _remove(old[1])
    return folder


def latest(run_dir: Location, key: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest intact checkpoint of trial `key` (its state dict, or None) and what was
    wrong with each newer one it skipped (one line each)."""
    skipped = []
    for epoch, folder in _epoch_folders(trial_folder(run_dir, key)):
        try:
            return load(folder, epoch), skipped
        except CheckpointError as exc:
            skipped.append(f"{exc}; trying an older checkpoint")
    return None, skipped


def load(folder: Location, epoch: int | None = None) -> dict[str, Any]:
    """One checkpoint folder, checked against its marker and loaded with
    weights_only=True (never runs pickled code)."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
        data = (folder / CHECKPOINT_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder} is incomplete: {exc}") from None
    if len(data) != marker.get("bytes") or hashlib.sha256(data).hexdigest() != marker.get("sha256"):
        raise CheckpointError(f"checkpoint {folder / CHECKPOINT_FILE} is damaged: {len(data)} "
                              f"bytes that do not match its marker ({marker.get('bytes')} bytes)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {folder / CHECKPOINT_FILE} is unreadable: "
                              f"{type(exc).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {folder / CHECKPOINT_FILE} is not a "
                              f"{CHECKPOINT_FORMAT} checkpoint")
    if epoch is not None and state.get("epoch") != epoch:
        raise CheckpointError(f"checkpoint {folder} holds epoch {state.get('epoch')}, "
                              f"not the {epoch} its folder names")
    return state


def _epoch_folders(folder: Location) -> list[tuple[int, Location]]:
    """(epoch, folder) of every `epoch_N` folder, newest epoch first."""
    try:
        children = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []
    found = [(int(m.group(1)), child) for child in children
             if (m := _EPOCH_DIR.match(child.name))]
    return sorted(found, key=lambda item: item[0], reverse=True)


def _remove(folder: Location) -> None:
    if isinstance(folder, RemotePath):
        folder.rmtree()
    else:
        shutil.rmtree(folder, ignore_errors=True)
