"""Faults injected for real: diverging trials, incremental re-runs, a killed driver,
damaged checkpoints and records, and bad command-line input."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, run, write_cifar100, write_study
from raysweep import records, worker
from raysweep.records import read_records


def raysweep(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "raysweep.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("raysweep: error: ") and "Traceback" not in proc.stderr
    return lines[-1]


# --- checkpoints and records (no Ray needed) ---

def test_foreign_and_damaged_checkpoints_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "a" / worker.CHECKPOINT_FILE)
    with pytest.raises(worker.CheckpointError, match="is not a raysweep-checkpoint-v1"):
        worker.load_checkpoint(str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / worker.CHECKPOINT_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(worker.CheckpointError, match="is unreadable"):
        worker.load_checkpoint(str(tmp_path / "b"))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/raysweep-pwned",))


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    (tmp_path / "c").mkdir()
    with open(tmp_path / "c" / worker.CHECKPOINT_FILE, "wb") as f:
        pickle.dump({"format": worker.CHECKPOINT_FORMAT, "x": _Exploit()}, f)
    with pytest.raises(worker.CheckpointError):
        worker.load_checkpoint(str(tmp_path / "c"))
    assert not Path("/tmp/raysweep-pwned").exists()


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


# --- trials that fail, with a real Ray ---

@pytest.mark.slow
def test_diverging_trial_is_recorded_and_the_study_goes_on(ray_local, tmp_path):
    path = write_study(tmp_path, "nan", defaults={**TINY, "epochs": 2}, asha={"enabled": False},
                       models=["resnet_20", {"model": "resnet_20", "set": {"lr": 1.0e+9}}])
    recs = {r["config"]["lr"]: r for r in read_records(run(path, tmp_path / "runs"))}
    assert recs[1.0e+9]["status"] == "diverged" and recs[1.0e+9]["stopped_at_epoch"] == 1
    assert "non-finite training loss at epoch 1" in recs[1.0e+9]["error"]
    assert recs[0.012]["status"] == "completed"


@pytest.mark.slow
def test_rerun_with_an_added_model_runs_only_the_new_trial(ray_local, tmp_path):
    body = dict(defaults={**TINY, "epochs": 1}, asha={"enabled": False})
    first = write_study(tmp_path, "inc", models=["resnet_20"], **body)
    run_dir = run(first, tmp_path / "runs")
    [before] = read_records(run_dir)
    second = write_study(tmp_path, "inc", models=["resnet_20", "resnet_32"], **body)
    timings = {}
    run(second, tmp_path / "runs", timings=timings)
    assert (timings["trials_total"], timings["trials_run"]) == (2, 1)
    after = {r["model"]: r for r in read_records(run_dir)}
    assert after["resnet_20"] == before
    assert after["resnet_32"]["status"] == "completed"


# --- the driver killed mid-study, then resumed ---

@pytest.mark.slow
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


# --- bad input on the command line ---

def test_resume_of_an_unknown_run_is_refused(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path,
                                   "--name", "nope", "--resume"))
    assert "--resume: no run named 'nope'" in line


def test_unwritable_storage_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "file"))
    assert "is not writable" in line


def test_more_workers_than_the_cluster_has_fails_fast(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path,
                                   "--workers-per-trial", 64))
    assert "64 workers × 1 CPU = 64 CPUs per trial, but the cluster has" in line


def test_missing_and_damaged_datasets_are_refused_before_any_trial(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "r",
                                   "--dataset", "cifar100", "--data-dir", tmp_path / "empty"))
    assert "cifar100 not found under data_dir=" in line and "--download" in line
    root = write_cifar100(tmp_path / "data", 16, 8)
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "r",
                                   "--dataset", "cifar100", "--data-dir", root))
    assert "fail torchvision's MD5 check" in line
    assert not list((tmp_path / "r").glob("*/records/*.json"))
