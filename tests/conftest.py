"""Shared fixtures: a real local Ray, small disks, and one real small study run whose
records several test modules read. Plain helpers are in tests/support/."""
from __future__ import annotations

import fcntl
import json
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
def ray_local(tmp_path_factory):
    """One local Ray for the engine tests, as `--local` starts it. The dashboard is on:
    Train's placement-group cleaner and the State API need it. Yields the dashboard URL
    (State API calls must name it: other Ray instances may run on the machine).

    Under pytest-xdist the processes share it, since an idle Ray's servers, agents and
    dashboard cost CPU all session long: the first process to need it starts it, the
    others join it (`--local --address`, as `join_ray`'s children do). Its trials are
    the only thing they share, as two studies on one `--local` Ray would: what a test
    asserts about the cluster's actors it asserts about its own job's."""
    shared = _shared_folder(tmp_path_factory)
    if shared is None:
        url = cluster.connect(local=True, address=None)
        yield url
        cluster.disconnect()
    else:
        yield from _shared_ray(shared)


def _shared_folder(tmp_path_factory) -> Path | None:
    """pytest-of-<user>/pytest-<n>/, the folder above each xdist process's own
    (popen-gwN); None without xdist."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return tmp_path_factory.getbasetemp().parent


def _shared_ray(folder: Path):
    """The session's Ray, started or joined under a lock. The process that started it
    stops it only when every process that joined is gone: those hold a shared lock on
    `ray.users` while connected, and the starter waits for an exclusive one."""
    state, users = folder / "ray.json", folder / "ray.users"
    with open(folder / "ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = not state.exists()
        if started:
            url = cluster.connect(local=True, address=None)
            state.write_text(json.dumps({"gcs": ray.get_runtime_context().gcs_address,
                                         "url": url}))
        else:
            joined = open(users, "w")
            fcntl.flock(joined, fcntl.LOCK_SH)
            info = json.loads(state.read_text())
            cluster.connect(local=True, address=info["gcs"])
            url = info["url"]
    try:
        yield url
    finally:
        if started:
            with open(folder / "ray.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                state.unlink()  # a process that comes later starts its own
            with open(users, "w") as last:
                fcntl.flock(last, fcntl.LOCK_EX)
                cluster.disconnect()
        else:
            cluster.disconnect()
            joined.close()


@pytest.fixture(scope="session")
def join_ray(ray_local) -> tuple[str, ...]:
    """The `raysweep run` options that join the session's Ray instead of starting one
    (`--local --address`: trials run as under `--local`), for a child process whose test
    is not about Ray starting, stopping or dying. The child reads the cluster's token
    where this user's Ray keeps it (`cluster._join_local`)."""
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
    root = _shared_folder(tmp_path_factory) or tmp_path_factory.getbasetemp()
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
