"""Shared fixtures: a real local Ray, study-writing helpers,
and one real small study run whose records several test modules read."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from raysweep.engine import cluster
from raysweep.training import data
from raysweep.engine.driver import run_study
from raysweep.store.records import read_records
from raysweep.study.parse import load_study
from raysweep.training.worker import lr_factor

# Small enough for 2 CPU cores (an epoch of resnet_20 takes ~2.5 s). AdamW at a peak lr
# of 3e-3 (global batch 32) learns the synthetic set within the first epoch, so ASHA's
# first rung already separates a learning trial from a hopeless one. 10% of the 512
# training images are held out for validation.
TINY = {"dataset": "synthetic", "synthetic_classes": 10, "train_size": 512, "test_size": 256,
        "batch_size": 32, "augment": "basic", "recipe": "adamw", "lr": 0.003,
        "scheduler": "cosine"}


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the engine tests, as `--local` starts it. The dashboard is on:
    Train's placement-group cleaner and the State API need it. Yields the dashboard URL
    (State API calls must name it: other Ray instances may run on the machine)."""
    url = cluster.connect(local=True, address=None)
    yield url
    cluster.disconnect()


@pytest.fixture(scope="session")
def join_ray(ray_local) -> tuple[str, ...]:
    """The `raysweep run` options that join the session's Ray instead of starting one
    (`--local --address`: trials run as under `--local`), for a child process whose test
    is not about Ray starting, stopping or dying. The child inherits RAY_AUTH_MODE=token
    (set here by `ray.init`) and reads the cluster's token from the same place."""
    return ("--local", "--address", ray.get_runtime_context().gcs_address)


def tmpfs(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder/disk`, for full-disk tests (mounting needs
    root: the test is skipped otherwise). A generator: a fixture yields from it."""
    disk = folder / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("mounting a small tmpfs needs root: "
                    + mounted.stderr.decode(errors="replace").strip())
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 64 KiB tmpfs: a checkpoint, a record or Tune's own files overflow it."""
    yield from tmpfs(tmp_path, "64k")


def write_study(folder: Path, name: str, **body) -> Path:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False))
    return path


def run(study_path: Path, storage: Path, name: str | None = None, **kw) -> Path:
    study = load_study(str(study_path))
    return run_study(study, str(storage), name, **kw)


@pytest.fixture(scope="session")
def smoke_run_dir(ray_local, tmp_path_factory) -> Path:
    """A real --local run of an ablation: one group with a baseline and two variants, 2
    seeds, ASHA off (as the ablation studies run); the `tiny_lr` variant cannot learn.
    (ASHA's stops, on the Train path, are in test_decisions.py.)"""
    folder = tmp_path_factory.mktemp("smoke_run")
    path = write_study(
        folder, "fixture",
        defaults={**TINY, "epochs": 2},
        groups={"demo": {"baseline": "resnet_20",
                         "variants": {"deeper": "resnet_32",
                                      "tiny_lr": {"model": "resnet_20", "set": {"lr": 1e-7}}}}},
        seeds=2, asha={"enabled": False})
    return run(path, folder / "runs", inline=True)


def raysweep(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it (`popen`: env, cwd)."""
    return subprocess.run([sys.executable, "-m", "raysweep.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **popen)


def one_error_line(proc) -> str:
    """A user error: exit status 2, one `raysweep: error:` line, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("raysweep: error: ") and "Traceback" not in proc.stderr
    return lines[-1]


def wait_for_epoch(run_dir: Path, epoch: int, proc, timeout: float = 300) -> None:
    """Until a trial of the run has recorded `epoch`, while the driver `proc` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        recs = read_records(run_dir) if (run_dir / "records").is_dir() else []
        if any(r.last_epoch >= epoch for r in recs):
            return
        time.sleep(0.2)  # polling a condition with a deadline
    raise AssertionError(f"epoch {epoch} never recorded (driver exit code {proc.poll()})")


def scheduled_lrs(train) -> list[float]:
    """The lr an uninterrupted trial records after each epoch: its peak lr times the
    schedule's factor at the epoch's last global step (`worker.lr_factor`)."""
    steps = data.steps_per_epoch(len(data.prepare(train, "cpu").train), train.batch_size)
    factor = lr_factor(train, steps)
    return [train.peak_lr * factor(e * steps) for e in range(1, train.epochs + 1)]
