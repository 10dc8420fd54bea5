"""Fault: the process that trains a trial killed (SIGKILL) mid-study: a Train worker
(Train restarts the worker group) or, for an inline `--local` trial, its Tune process
(Tune retries the trial). Either way the loop continues from the last epoch checkpoint:
one continuous history, the restart counted, the optimizer state carried over."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from support.studies import TINY, run, write_study
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("inline", [False, True], ids=["train-worker", "inline-tune-process"])
def test_killed_worker_restarts_from_its_checkpoint_with_the_same_optimizer(
        ray_local, tmp_path, inline):
    path = write_study(tmp_path, "restart", defaults={**TINY, "epochs": 3},
                       models=["resnet_20"], asha={"enabled": False})
    runs = tmp_path / "runs"
    worker = threading.Thread(target=run, args=(path, runs), kwargs={"inline": inline})
    worker.start()
    pid = _wait_for_worker_after_epoch(runs / "restart", 1, worker)
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=300)
    [r] = read_records(runs / "restart")
    assert {s.runner for s in r.segments} == {"inline" if inline else "train-workers"}
    assert r.status == "completed" and r.restarts == 1 and len(r.segments) == 2
    assert [h.epoch for h in r.history] == [1, 2, 3]
    resumed = r.segments[1]
    assert resumed.first_epoch == resumed.resumed_from_epoch + 1
    before = next(h for h in r.history if h.epoch == resumed.resumed_from_epoch)
    assert resumed.resumed_optimizer_fingerprint == pytest.approx(
        before.optimizer_fingerprint, rel=1e-9)
    assert {h.segment for h in r.history if h.epoch >= resumed.first_epoch} == {1}


def _wait_for_worker_after_epoch(run_dir, epoch, thread, timeout=180):
    """The pid of the trial's training process (rank 0's, from its record) once `epoch`
    is in the record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
        if recs and recs[0].last_epoch >= epoch:
            return recs[0].segments[-1].worker_pid
        time.sleep(0.2)  # polling a condition, not waiting for it to happen by itself
    raise AssertionError("the trial never finished its first epoch")
