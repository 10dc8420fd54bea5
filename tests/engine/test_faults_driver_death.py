"""Fault: the driver (`raysweep run`, and the Ray it started) killed with SIGKILL
mid-study; `--resume` finishes it without re-running finished trials, and the unfinished
one continues from its checkpoint: no epoch trained twice, even for a group whose name
Tune would rewrite in its folder names (`eca(k)`), and on another worker count (2 Train
workers for a trial started inline on 1) with its lr schedule where an uninterrupted run
has it (one optimisation problem whatever the hardware, as test_one_problem.py shows for
uninterrupted runs). Then the checkpoints themselves: a
damaged newest checkpoint is skipped for the intact one before it, and a run folder
copied without its file times resumes from the newest epoch, not the newest file."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from support.studies import TINY, scheduled_lrs, write_study
from support.cli import raysweep
from raysweep.store import checkpoints
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, join_ray):
    path = write_study(tmp_path, "resume", defaults={**TINY, "train_size": 256, "epochs": 3},
                       seeds=2,
                       groups={"eca(k)": {"baseline": "resnet_20", "variants": {}}},
                       asha={"enabled": False}, resources={"max_concurrent": 1})
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "resume"
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", path, "--local",
                             "--storage", storage], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = _wait_until(lambda: _progress(run_dir), lambda p: p[1] >= 1, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    finished_before = {r.key: r for r in read_records(run_dir) if r.status == "completed"}
    assert first[0] == 1 and len(finished_before) == 1  # one trial done, one mid-way

    # The killed driver's own Ray died with it; the resume joins the session's.
    resumed = raysweep("run", path, *join_ray, "--storage", storage, "--name", "resume",
                       "--resume", "--workers-per-trial", "2", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 of 2 trials run (1 already finished)" in resumed.stdout
    recs = read_records(run_dir)
    assert sorted(r.status for r in recs) == ["completed", "completed"]
    for r in recs:
        assert [h.epoch for h in r.history] == [1, 2, 3]
        if r.key in finished_before:
            assert r == finished_before[r.key]  # not re-run
        else:  # continued from its checkpoint: no epoch trained twice
            first_launch, second = r.segments
            assert r.restarts == 1 and second.first_epoch == second.resumed_from_epoch + 1
            assert [h.segment for h in r.history] == [0] * second.resumed_from_epoch + [1] * (
                3 - second.resumed_from_epoch)
            # ... on 2 Train workers, after 1 inline worker: the same lr schedule
            assert (first_launch.runner, first_launch.workers, first_launch.first_epoch) == (
                "inline", 1, 1)
            assert (second.runner, second.workers) == ("train-workers", 2)
            assert second.first_epoch >= 2
            assert [h.lr for h in r.history] == pytest.approx(scheduled_lrs(r.train),
                                                              rel=1e-9)
            assert r.history[-1].lr == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0


def _progress(run_dir):
    recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
    done = sum(r.status == "completed" for r in recs)
    running = [r for r in recs if r.status == "running"]
    return done, max((len(r.history) for r in running), default=0)


def _wait_until(probe, ready, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = probe()
        if ready(value) and value[0] >= 1:
            return value
        time.sleep(0.2)  # polling a condition
    raise AssertionError(f"the study never got there (driver exit code {proc.poll()})")


def test_a_damaged_checkpoint_falls_back_and_a_copied_folder_resumes_by_epoch(tmp_path,
                                                                             join_ray):
    path = write_study(tmp_path, "ckpt", defaults={**TINY, "train_size": 256, "epochs": 4},
                       models=["resnet_20"], asha={"enabled": False})
    storage = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", path, "--local",
                             "--storage", storage], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_until(lambda: _epochs_checkpointed(storage / "ckpt"), lambda v: v[0] >= 2, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    [folder] = (storage / "ckpt" / "checkpoints").iterdir()
    newest, older = sorted(folder.iterdir(), reverse=True)[:2]
    epoch = int(newest.name.split("_")[1])

    # A copy whose file times say the older checkpoint is the newer one: a resume of it
    # loads the newest epoch (`checkpoints.latest`, what a resuming trial calls).
    copy = tmp_path / "copy" / "ckpt"
    shutil.copytree(storage / "ckpt", copy, copy_function=shutil.copy)
    later = time.time() + 3600
    for item in (copy / "checkpoints" / folder.name / older.name).rglob("*"):
        os.utime(item, (later, later))
    state, skipped = checkpoints.latest(copy, folder.name)
    assert state["epoch"] == epoch and skipped == []   # by the epoch it holds

    # The original with its newest checkpoint cut in half (a disk that filled mid-save).
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    damaged = raysweep("run", path, *join_ray, "--storage", storage, "--name", "ckpt",
                       "--resume", timeout=600)
    assert damaged.returncode == 0, damaged.stderr[-3000:]
    warned = [ln for ln in damaged.stderr.splitlines() if str(state) in ln]
    assert len(warned) == 1 and warned[0].startswith("raysweep: warning: checkpoint ")
    assert "is damaged" in warned[0] and warned[0].endswith("trying an older checkpoint")
    [r] = read_records(storage / "ckpt")
    assert r.status == "completed" and r.segments[1].resumed_from_epoch == epoch - 1
    assert [h.epoch for h in r.history] == [1, 2, 3, 4]


def _epochs_checkpointed(run_dir):
    found = list((run_dir / "checkpoints").glob("*/epoch_*/complete.json"))
    return (max(int(p.parent.name.split("_")[1]) for p in found) if found else 0,)
