"""Per-trial TensorBoard files, read back with TensorBoard's own reader."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from raysweep.observe.tensorboard import SCALARS, TensorBoardWriter, export_run, trial_folder
from support.factories import epoch, record, spec, write_run


def _read(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def _points(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, round(e.value, 4)) for e in acc.Scalars(tag)]


def _hparams(acc: EventAccumulator) -> tuple[dict, int | None]:
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG])
    values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
              for k, v in start.hparams.items()}
    end = content.get(hparams_metadata.SESSION_END_INFO_TAG)
    return values, end and hparams_metadata.parse_session_end_info_plugin_data(end).status


def test_each_trial_gets_clear_scalars_and_hparams(tmp_path):
    # A made-up model with a made-up option (the zoo's models check theirs when keyed).
    base = record(spec("toy_net", seed=1, group="demo", options={"width": 2}),
                  top1=[40.0, 45.0, 50.0])
    failed = record(spec(seed=0, group="demo", variant="tiny_lr", lr=1e-7), status="diverged",
                    top1=[1.0], val_top1=[None])
    board = TensorBoardWriter(tmp_path)
    for r in (base, failed):    # as the record writer sees them: one epoch at a time
        for n in range(len(r.history)):
            board.observe(dataclasses.replace(r, status="running", history=r.history[:n + 1]))
        board.observe(r)
    board.close()

    acc = _read(trial_folder(tmp_path, base))
    assert trial_folder(tmp_path, base).name == f"demo.baseline-s1.{base.key}"
    assert sorted(acc.Tags()["scalars"]) == sorted(SCALARS)
    assert _points(acc, "top1/test") == [(1, 40.0), (2, 45.0), (3, 50.0)]
    assert _points(acc, "top1/val") == [(1, 40.0), (2, 45.0), (3, 50.0)]
    assert _points(acc, "lr") == [(1, 0.1), (2, 0.1), (3, 0.1)]
    values, status = _hparams(acc)
    assert {k: values[k] for k in ("model", "arm", "variant", "seed", "option.width", "lr",
                                   "epochs", "val_fraction")} == {
        "model": "toy_net", "arm": "demo.baseline", "variant": "baseline", "seed": 1.0,
        "option.width": 2.0, "lr": 0.1, "epochs": 3.0, "val_fraction": 0.1}
    assert "data_dir" not in values and "sample" not in values   # not identity; no sample
    assert status == api_pb2.STATUS_SUCCESS

    acc = _read(trial_folder(tmp_path, failed))
    assert "top1/val" not in acc.Tags()["scalars"]                 # no value, no point
    values, status = _hparams(acc)
    assert values["lr"] == 1e-7 and values["variant"] == "tiny_lr"
    assert status == api_pb2.STATUS_FAILURE


def test_rewriting_is_idempotent_and_a_retrained_epoch_replaces_the_old_point(tmp_path):
    trial = record(spec(seed=0), status="running", top1=[40.0, 45.0])
    folder = write_run(tmp_path, [trial])
    export_run(folder)
    export_run(folder)                          # a second export writes nothing
    TensorBoardWriter(folder).observe(trial)    # nor does a new driver seeing the same epochs
    files = sorted(p.name for p in trial_folder(folder, trial).iterdir())
    assert len([f for f in files if f.startswith("events.")]) == 1
    assert _points(_read(trial_folder(folder, trial)), "top1/test") == [(1, 40.0), (2, 45.0)]

    # Resumed from epoch 1's checkpoint: epoch 2 is trained again, then epoch 3.
    resumed = dataclasses.replace(trial, status="completed",
                                  history=[trial.history[0], epoch(2, 47.0, 47.0),
                                           epoch(3, 49.0, 49.0)])
    board = TensorBoardWriter(folder)
    board.observe(resumed)
    board.close()
    acc = _read(trial_folder(folder, trial))
    assert _points(acc, "top1/test") == [(1, 40.0), (2, 47.0), (3, 49.0)]
    assert _hparams(acc)[1] == api_pb2.STATUS_SUCCESS


def test_a_driver_writes_the_files_without_importing_torch(tmp_path):
    """`raysweep run`'s driver trains nothing: writing a trial's TensorBoard files must
    not import torch (tensorboardX's writer would, ~4 s of CPU per run)."""
    trial = record(spec(seed=0), status="completed", top1=[40.0, 45.0])
    folder = write_run(tmp_path, [trial])
    code = ("import sys; from raysweep.observe.tensorboard import export_run; "
            f"export_run({str(folder)!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
    acc = _read(trial_folder(folder, trial))
    assert _points(acc, "top1/test") == [(1, 40.0), (2, 45.0)]
    assert _hparams(acc)[1] == api_pb2.STATUS_SUCCESS
