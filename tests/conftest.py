"""Shared fixtures: a real local Ray, small disks, and one real small study run whose
records several test modules read. Plain helpers are in tests/support/."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import ray
import torch

from raysweep.engine import cluster
from support.disk import tmpfs
from support.studies import TINY, run, write_study


def pytest_configure(config):
    """Under pytest-xdist, each process (and what it starts) gets its share of the cores
    for torch's threads: two processes × all cores oversubscribe them, and OpenMP's
    spinning threads then cost more CPU than they compute (the zoo's tests ran 2.4×
    slower beside a Ray test). Trials set their own threads (`cpus_per_worker`)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 64 KiB tmpfs: a checkpoint, a record or Tune's own files overflow it."""
    yield from tmpfs(tmp_path, "64k")


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory, request) -> Path:
    """A real --local run of an ablation: one group with a baseline and two variants, 2
    seeds, ASHA off (as the ablation studies run); the `tiny_lr` variant cannot learn.
    (ASHA's stops, on the Train path, are in test_decisions.py.) Made once per test
    session: under pytest-xdist the first process to need it makes it, in the folder all
    processes share, while the others wait on a lock; the tests only read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent   # pytest-of-<user>/pytest-<n>/, above each process's popen-gwN
    folder, made = root / "smoke_run", root / "smoke_run.made"
    with open(root / "smoke_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            request.getfixturevalue("ray_local")
            folder.mkdir(exist_ok=True)
            path = write_study(
                folder, "fixture",
                defaults={**TINY, "epochs": 2},
                groups={"demo": {"baseline": "resnet_20",
                                 "variants": {"deeper": "resnet_32",
                                              "tiny_lr": {"model": "resnet_20",
                                                          "set": {"lr": 1e-7}}}}},
                seeds=2, asha={"enabled": False})
            made.write_text(str(run(path, folder / "runs", inline=True)))
    return Path(made.read_text())
