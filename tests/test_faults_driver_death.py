"""Fault: the driver (`raysweep run`, and the Ray it started) killed with SIGKILL
mid-study; `--resume` finishes it without re-running finished trials, and the unfinished
one continues from its checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, raysweep, write_study
from raysweep.records import read_records

pytestmark = pytest.mark.slow


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    path = write_study(tmp_path, "resume", defaults={**TINY, "epochs": 3}, seeds=2,
                       models=["resnet_20"], asha={"enabled": False},
                       resources={"max_concurrent": 1})
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "resume"
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", path, "--local",
                             "--storage", storage], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = _wait_until(lambda: _progress(run_dir), lambda p: p[1] >= 1, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    finished_before = {r["key"]: r for r in read_records(run_dir) if r["status"] == "completed"}
    assert first[0] == 1 and len(finished_before) == 1  # one trial done, one mid-way

    resumed = raysweep("run", path, "--local", "--storage", storage, "--name", "resume",
                       "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 of 2 trials run (1 already finished)" in resumed.stdout
    recs = read_records(run_dir)
    assert sorted(r["status"] for r in recs) == ["completed", "completed"]
    for r in recs:
        assert [h["epoch"] for h in r["history"]] == [1, 2, 3]
        if r["key"] in finished_before:
            assert r == finished_before[r["key"]]  # not re-run
        else:
            assert r["restarts"] == 1  # continued from its checkpoint


def _progress(run_dir):
    recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
    done = sum(r["status"] == "completed" for r in recs)
    running = [r for r in recs if r["status"] == "running"]
    return done, max((len(r["history"]) for r in running), default=0)


def _wait_until(probe, ready, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = probe()
        if ready(value) and value[0] >= 1:
            return value
        time.sleep(0.2)  # polling a condition
    raise AssertionError(f"the study never got there (driver exit code {proc.poll()})")
