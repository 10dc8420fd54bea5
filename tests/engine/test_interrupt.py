"""Ctrl-C is a normal way to stop a study: exit status 130, nothing left `running`, and
one command resumes it with the study it was started with (overrides included); a
resume whose command line would change a started trial's identity is refused."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from support.studies import TINY, write_study
from support.cli import one_error_line, raysweep
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow


def test_ctrl_c_stops_cleanly_and_one_command_resumes_with_the_original_overrides(tmp_path):
    # The file says 2 epochs; the run is started with 3: the resume must keep the 3.
    path = write_study(tmp_path, "stop", defaults={**TINY, "train_size": 256, "epochs": 2}, seeds=2,
                       models=["resnet_20"], asha={"enabled": False},
                       resources={"max_concurrent": 1})
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "stop"
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", path, "--local",
                             "--storage", storage, "--set", "epochs=3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_first_epoch(run_dir, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    records = read_records(run_dir)
    assert records and not [r for r in records if r.status == "running"]
    assert "interrupted" in {r.status for r in records}
    command = err.strip().splitlines()[-1].rsplit(": ", 1)[1]
    assert command == (f"raysweep run {path} --storage {storage} --name stop --resume --local")

    refused = raysweep("run", path, "--local", "--storage", storage, "--name", "stop",
                       "--resume", "--set", "lr=0.01")
    assert one_error_line(refused) == (
        "raysweep: error: --resume: this command line changes defaults.lr: 0.003 → 0.01, which "
        f"changes the identity of {len(records)} trial(s) run 'stop' has started; drop it, "
        "or run under a new --name")

    resumed = raysweep(*command.split()[1:], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = read_records(run_dir)
    assert sorted(r.status for r in records) == ["completed", "completed"]
    assert all(r.train.epochs == 3 and [h.epoch for h in r.history] == [1, 2, 3]
               for r in records)


def _wait_for_first_epoch(run_dir, proc, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
        if any(r.last_epoch >= 1 for r in recs):
            return
        time.sleep(0.2)  # polling a condition with a deadline
    raise AssertionError(f"no epoch finished (exit code {proc.poll()})")
