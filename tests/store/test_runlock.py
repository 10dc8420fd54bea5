"""One run per run folder (`raysweep.runlock`): real processes hold, lose and race for
the lock; a second `raysweep run` on a held folder is refused with one line."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from raysweep.errors import RunLockedError, StudyError
from raysweep.store.storage import RemotePath
from raysweep.store.runlock import LOCK_NAME, LockHolder, RunLock, StaleLockWarning

ROOT = Path(__file__).resolve().parents[2]

# A `raysweep run` stand-in: takes the lock, says so, holds it until its stdin closes.
HOLD = """
import sys
from raysweep.store.runlock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""

# Waits for "go" on stdin, then tries to take the lock; prints won/refused; a winner holds.
RACE = """
import sys, warnings
from raysweep.errors import RunLockedError
from raysweep.store.runlock import RunLock
warnings.simplefilter("ignore")
print("ready", flush=True)
sys.stdin.readline()
try:
    lock = RunLock(sys.argv[1]).__enter__()
except RunLockedError:
    print("refused", flush=True)
    sys.exit(0)
print("won", flush=True)
sys.stdin.read()
lock.release()
"""


def _python(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _holder(run_dir: Path) -> subprocess.Popen:
    child = _python(HOLD, run_dir)
    assert child.stdout.readline().strip() == "held", "the holder never took the lock"
    return child


def _lock(run_dir: Path) -> LockHolder:
    return LockHolder.from_json((run_dir / LOCK_NAME).read_text())


def test_a_held_folder_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "runs" / "study"
    child = _holder(run_dir)
    try:
        with pytest.raises(RunLockedError) as refused:
            RunLock(run_dir).__enter__()
        line = str(refused.value)
        assert "\n" not in line and f"pid {child.pid}," in line and "since" in line
        assert str(run_dir) in line and "another --name" in line
        assert _lock(run_dir).pid == child.pid  # the refused run left the lock alone
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (run_dir / LOCK_NAME).is_file()  # SIGKILL leaves the lock behind

    with pytest.warns(StaleLockWarning, match=f"pid {child.pid} is gone"):
        with RunLock(run_dir):
            assert _lock(run_dir).pid == os.getpid()
    assert not (run_dir / LOCK_NAME).exists()


def test_the_lock_is_released_on_an_exception_and_on_ctrl_c(tmp_path):
    with pytest.raises(ValueError):
        with RunLock(tmp_path / "a"):
            raise ValueError("a failing study")
    assert not (tmp_path / "a" / LOCK_NAME).exists()

    child = _holder(tmp_path / "b")
    child.send_signal(signal.SIGINT)  # Ctrl-C in a real process
    child.wait(timeout=60)
    assert child.returncode != 0 and not (tmp_path / "b" / LOCK_NAME).exists()


def test_a_reused_pid_and_another_hosts_silent_lock_are_stale(tmp_path):
    me = LockHolder.me(heartbeat_s=10.0)
    reused = dataclasses.replace(me, started_unix_s=me.started_unix_s - 3600, token="old")
    assert "another process now" in reused.gone()

    elsewhere = dataclasses.replace(me, host="other-host", pid_space="other", token="b")
    (tmp_path / LOCK_NAME).write_text(elsewhere.to_json())
    with pytest.raises(RunLockedError, match="host other-host"):
        RunLock(tmp_path).__enter__()  # beating 0 s ago: its run may be going on

    silent = dataclasses.replace(elsewhere, heartbeat_unix_s=time.time() - 31)  # 3 beats missed
    (tmp_path / LOCK_NAME).write_text(silent.to_json())
    with pytest.warns(StaleLockWarning, match=r"no heartbeat for 3\d s \(lease 30 s\)"):
        with RunLock(tmp_path):
            assert _lock(tmp_path).host != "other-host"

    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.warns(StaleLockWarning, match="unreadable"):
        with RunLock(tmp_path):
            assert _lock(tmp_path).pid == os.getpid()


def test_the_heartbeat_is_refreshed(tmp_path):
    with RunLock(tmp_path, heartbeat_s=0.1):
        first = _lock(tmp_path).heartbeat_unix_s
        deadline = time.monotonic() + 30
        while _lock(tmp_path).heartbeat_unix_s == first:
            assert time.monotonic() < deadline, "the heartbeat never moved"
            time.sleep(0.05)  # polling the lock file


@pytest.mark.parametrize("left_by", ["nobody", "a killed run"])
def test_of_runs_racing_for_one_folder_exactly_one_wins(tmp_path, left_by):
    run_dir = tmp_path / "study"
    if left_by == "a killed run":
        dead = _holder(run_dir)
        dead.send_signal(signal.SIGKILL)
        dead.wait()
    racers = [_python(RACE, run_dir) for _ in range(4)]
    try:
        assert [r.stdout.readline().strip() for r in racers] == ["ready"] * 4
        for r in racers:
            r.stdin.write("go\n")
            r.stdin.flush()
        outcomes = sorted(r.stdout.readline().strip() for r in racers)
    finally:
        for r in racers:
            r.stdin.close()
            r.wait(timeout=60)
    assert outcomes == ["refused", "refused", "refused", "won"]


def test_a_lock_on_object_storage_is_written_then_read_back(tmp_path):
    """The RemotePath code path (s3://, gs://) on pyarrow's local filesystem."""
    run_dir = RemotePath("file", str(tmp_path / "study"), pafs.LocalFileSystem())
    with RunLock(run_dir, settle_s=0.05):
        assert _lock(tmp_path / "study").pid == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()},"):
            RunLock(run_dir, settle_s=0.05).__enter__()
    assert not (tmp_path / "study" / LOCK_NAME).exists()

    gone = dataclasses.replace(LockHolder.me(10.0), host="other-host", pid_space="x",
                               heartbeat_unix_s=0.0)
    (tmp_path / "study" / LOCK_NAME).write_text(gone.to_json())
    with pytest.warns(StaleLockWarning, match="other-host"):
        with RunLock(run_dir, settle_s=0.05):
            assert _lock(tmp_path / "study").pid == os.getpid()


def test_an_unwritable_storage_is_one_line_and_a_new_folder_is_not_left_empty(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StudyError, match="is not writable"):
        RunLock(tmp_path / "a-file" / "study").__enter__()

    with RunLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # e.g. `--resume` of a name that does not exist
    (tmp_path / "kept").mkdir()
    with RunLock(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir()


# --- end to end, through the CLI: needs the lead's wiring of RunLock into `raysweep run` ---

@pytest.mark.slow
def test_a_second_raysweep_run_on_one_run_folder_is_refused_while_the_first_finishes(tmp_path,
                                                                                     join_ray):
    from support.studies import TINY, write_study
    from support.cli import one_error_line, raysweep
    from raysweep.store.records import read_records

    path = write_study(tmp_path, "twice", defaults={**TINY, "epochs": 3}, seeds=2,
                       models=["resnet_20"], asha={"enabled": False},
                       resources={"max_concurrent": 1})
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "twice"
    first = _cli_run(path, storage, *join_ray)
    try:
        _wait_for(lambda: any(r.status == "running" for r in read_records(run_dir))
                  if (run_dir / "records").is_dir() else False, first)
        line = one_error_line(raysweep("run", path, "--local", "--storage", storage))
        assert f"pid {first.pid}," in line and "in use by another raysweep run" in line
        assert first.poll() is None  # refused while the first one still ran
        first.wait(timeout=600)
    finally:
        _kill(first)
    assert first.returncode == 0, path.with_suffix(".stderr").read_text()[-3000:]
    assert sorted(r.status for r in read_records(run_dir)) == ["completed", "completed"]
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_killed_raysweep_runs_lock_is_taken_over_by_the_next_run(tmp_path, join_ray):
    from support.studies import TINY, write_study
    from support.cli import raysweep

    path = write_study(tmp_path, "once", defaults={**TINY, "epochs": 1, "train_size": 128,
                                                    "test_size": 64},
                       models=["resnet_20"], asha={"enabled": False})
    killed = _cli_run(path, tmp_path / "runs")
    try:
        _wait_for(lambda: (tmp_path / "runs" / "once" / LOCK_NAME).is_file(), killed)
    finally:
        _kill(killed)  # SIGKILL: its lock stays behind
    # The killed run kept its own Ray (killed while starting it); the next one joins.
    again = raysweep("run", path, *join_ray, "--storage", tmp_path / "runs")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "taking over a stale lock" in again.stderr
    assert f"pid {killed.pid} is gone" in again.stderr


def _cli_run(study: Path, storage: Path, *ray: str) -> subprocess.Popen:
    """`raysweep run` in the background (`ray`: options that join a running Ray; default
    `--local`); its stderr goes to a file beside the study (a pipe nobody reads while it
    runs could fill and stall it)."""
    with open(study.with_suffix(".stderr"), "w") as err:
        return subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", study,
                                 *(ray or ["--local"]), "--storage", storage],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _wait_for(ready, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"the run exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.1)  # polling the run folder


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
