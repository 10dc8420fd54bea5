"""Fault: a Train worker process killed (SIGKILL) mid-study. Train restarts the worker
group and the loop continues from the last epoch checkpoint: one continuous history,
the restart counted, the optimizer state carried over."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from ray.util.state import list_actors

from conftest import TINY, run, write_study
from raysweep.records import read_records

pytestmark = pytest.mark.slow


def test_killed_worker_restarts_from_its_checkpoint_with_the_same_optimizer(ray_local, tmp_path):
    path = write_study(tmp_path, "restart", defaults={**TINY, "epochs": 4, "train_size": 1024},
                       models=["resnet_20"], asha={"enabled": False})
    runs = tmp_path / "runs"
    worker = threading.Thread(target=run, args=(path, runs))
    worker.start()
    pid = _wait_for_worker_after_epoch(runs / "restart", 1, worker, ray_local)
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=300)
    [r] = read_records(runs / "restart")
    assert r["status"] == "completed" and r["restarts"] == 1
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3, 4]
    resumed = [h for h in r["history"] if "resumed_optimizer_fingerprint" in h]
    assert len(resumed) == 1
    before = next(h for h in r["history"] if h["epoch"] == resumed[0]["epoch"] - 1)
    assert resumed[0]["resumed_optimizer_fingerprint"] == pytest.approx(
        before["optimizer_fingerprint"], rel=1e-9)


def _wait_for_worker_after_epoch(run_dir, epoch, thread, address, timeout=180):
    """The pid of the trial's Train worker once `epoch` is in the record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
        if recs and recs[0]["history"] and recs[0]["history"][-1]["epoch"] >= epoch:
            workers = list_actors(address=address, filters=[
                ("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
            if workers:
                return workers[0].pid
        time.sleep(0.2)  # polling a condition, not waiting for it to happen by itself
    raise AssertionError("the trial never finished its first epoch")
