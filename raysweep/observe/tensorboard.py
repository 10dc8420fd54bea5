"""TensorBoard files per trial, written from its record: `<run>/tensorboard/<label>.<key>/`.

    board = TensorBoardWriter(run_dir)
    board.observe(record)        # after every record write: writes what is new
    board.close()
    export_run(run_dir)          # the same for every record of a finished or copied run

    tensorboard --logdir runs/NAME/tensorboard

Per epoch (step = epoch), only what a reader compares: `loss/train`, `loss/val`,
`loss/test`, `top1/val`, `top1/test`, `top5/val`, `top5/test`, `lr` (per optimizer step,
the epoch's last), `throughput/images_per_s` (all workers), `time/epoch_seconds`. Once per
trial, its HParams (model, arm, group, variant, seed, sample, model options as
`option.<name>`, every training value of its identity), and when it ends a session-end
status (completed and stopped: success; diverged and errored: failure). No experiment
summary is written: TensorBoard's HParams view then builds one from all trials' hparams
and scalars, so trials with different searched values compare in one table.

Idempotent: `<trial folder>/written.json` keeps a digest of every epoch written. An epoch
already written with the same numbers is skipped; when an earlier epoch's numbers change
(a trial resumed from an older checkpoint re-trains it), a new event file starts with
TensorBoard's purge marker (`SessionLog.START` at that epoch), which hides every older
point from that epoch on, then the epochs from there are written again (checked with
`EventAccumulator` and both `tensorboard --load_fast=true|false` loaders).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from itertools import count
from pathlib import Path

from raysweep.observe.progress import arm_label, trial_label
from raysweep.store.storage import RemotePath, atomic_write_text
from raysweep.core.status import FINISHED
from raysweep.core.trial import EpochResult, TrialRecord

TENSORBOARD_DIR = "tensorboard"
STATE_FILE = "written.json"
# tag -> EpochResult field
SCALARS = {
    "loss/train": "train_loss", "loss/val": "val_loss", "loss/test": "test_loss",
    "top1/val": "val_top1", "top1/test": "test_top1",
    "top5/val": "val_top5", "top5/test": "test_top5",
    "lr": "lr", "throughput/images_per_s": "images_per_s",
    "time/epoch_seconds": "epoch_seconds",
}
ENDED = FINISHED + ("errored",)
_files = count()  # event file names must differ within one second in one process


def trial_folder(run_dir: Path, record: TrialRecord) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR / f"{trial_label(record)}.{record.key}"


def hparams(record: TrialRecord) -> dict[str, str | float | int | bool]:
    """What the HParams view compares: identity of the trial, flattened to scalars."""
    first = record.labels[0]
    values = {"model": record.model, "arm": arm_label(record), "group": first.group,
              "variant": first.variant, "seed": record.seed, "sample": record.sample}
    values.update({f"option.{k}": v for k, v in record.model_options.items()})
    values.update(record.train.identity())
    return {k: _scalar(v) for k, v in values.items() if v is not None}


def _scalar(value):
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return json.dumps(value, sort_keys=True, default=str)


def _digest(entry: EpochResult) -> str:
    blob = json.dumps(dataclasses.asdict(entry), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class TensorBoardWriter:
    """Keeps one event file open per running trial of a run folder (local runs only:
    for a run on remote storage `observe` does nothing; export it after syncing)."""

    def __init__(self, run_dir: Path | RemotePath):
        self.run_dir = run_dir
        self.writers = {}  # trial key -> open SummaryWriter

    def observe(self, record: TrialRecord) -> Path | None:
        """Write the record's epochs, hparams and end that are not on disk yet."""
        if isinstance(self.run_dir, RemotePath):
            return None
        folder = trial_folder(self.run_dir, record)
        state = _read_state(folder)
        digests = {str(e.epoch): _digest(e) for e in record.history}
        changed = [int(n) for n, d in digests.items() if state["epochs"].get(n) != d]
        start = min(changed, default=None)
        if start is not None and any(int(n) >= start for n in state["epochs"]):
            self._close(record.key)  # rewrite from `start`: a new file that purges the old
            state["epochs"] = {n: d for n, d in state["epochs"].items() if int(n) < start}
            state["end"] = None
            writer = self._writer(record.key, folder, purge_step=start)
        elif start is not None or not state["hparams"] or _ends(record, state):
            # A trial's first file opens with a session start too: TensorBoard's Python
            # loader treats only later ones as restarts that purge.
            writer = self._writer(record.key, folder, purge_step=None if state["hparams"] else 0)
        else:
            return folder
        if not state["hparams"]:
            writer.file_writer.add_summary(_session_start(record), global_step=0)
            state["hparams"] = True
        for entry in record.history:
            if start is not None and entry.epoch >= start:
                _add_epoch(writer, entry)
        if _ends(record, state):
            writer.file_writer.add_summary(_session_end(record.status), record.last_epoch)
            state["end"] = record.status
        state["epochs"].update(digests)
        writer.flush()
        atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))
        if record.status in ENDED:
            self._close(record.key)
        return folder

    def _writer(self, key: str, folder: Path, purge_step: int | None = None):
        if key not in self.writers:
            self.writers[key] = _tensorboardx().SummaryWriter(
                str(folder), purge_step=purge_step, flush_secs=30,
                filename_suffix=f".{os.getpid()}.{next(_files)}")
        return self.writers[key]

    def _close(self, key: str) -> None:
        writer = self.writers.pop(key, None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        for key in list(self.writers):
            self._close(key)


def export_run(run_dir: Path) -> list[Path]:
    """TensorBoard folders for every record of a run (idempotent; for a run copied from a
    cluster or made before this writer was wired in)."""
    from raysweep.store.records import read_records

    board = TensorBoardWriter(Path(run_dir))
    try:
        return [board.observe(r) for r in read_records(Path(run_dir))]
    finally:
        board.close()


def _ends(record: TrialRecord, state: dict) -> bool:
    return record.status in ENDED and state["end"] != record.status


def _read_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        if isinstance(state.get("epochs"), dict):
            return {"epochs": state["epochs"], "hparams": bool(state.get("hparams")),
                    "end": state.get("end")}
    except (OSError, ValueError, AttributeError):
        pass  # missing or damaged: write everything again, purging what was there
    return {"epochs": {}, "hparams": False, "end": None}


def _add_epoch(writer, entry: EpochResult) -> None:
    for tag, name in SCALARS.items():
        value = getattr(entry, name)
        if value is not None:
            writer.add_scalar(tag, value, entry.epoch)


def _tensorboardx():
    """tensorboardX, imported without torch where torch is not loaded yet: its writer
    imports torch only to accept torch tensors, which we never pass, and torch would cost
    `raysweep run`'s driver ~4 s of CPU at its first record (the driver trains nothing)."""
    import sys

    if "torch" in sys.modules:
        import tensorboardX
        return tensorboardX
    sys.modules["torch"] = None    # makes `import torch` raise ImportError, which it handles
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


def _session_start(record: TrialRecord):
    _, start, _ = _tensorboardx().summary.hparams(hparams(record), {})
    return start


def _session_end(status: str):
    _tensorboardx()   # the package first, without torch
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if status in ("completed", "stopped")
                                             else "STATUS_FAILURE"),
                         end_time_secs=time.time())
    content = HParamsPluginData(session_end_info=end, version=0).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                  content=content))
    return Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=meta)])
