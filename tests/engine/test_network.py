"""Network: a local Ray started as `--local` starts it listens on loopback only, and its
processes are gone within seconds of its driver's SIGKILL. The driver is a real child
process (`cluster.connect(local=True)`, a task and an actor), inspected with psutil."""
from __future__ import annotations

import ipaddress
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10.0  # Ray alone leaves its two agents for 60 s (see raysweep/engine/reaper.py)

DRIVER = """
import os, sys, ray
from raysweep.engine import cluster
url = cluster.connect(local=True, address=None)

@ray.remote
def pid():
    return os.getpid()

@ray.remote
class Holder:
    def pid(self):
        return os.getpid()

holder = Holder.remote()
print(url, ray.get_runtime_context().gcs_address, *ray.get([pid.remote(), holder.pid.remote()]),
      flush=True)
sys.stdin.read()
cluster.disconnect()
"""


class LocalDriver:
    """A driver process with a local Ray up, started again if a test killed it."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.url, self.gcs, self.worker_pids = "", "", []

    def get(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        return self.proc

    def _start(self, timeout_s: float = 180.0) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline().split() if ready else []
        assert len(line) == 4, f"the driver never started Ray (exit code {self.proc.poll()})"
        self.url, self.gcs, self.worker_pids = line[0], line[1], [int(p) for p in line[2:]]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # the driver disconnects
            self.proc.wait(timeout=120)


@pytest.fixture(scope="module")
def local_driver():
    driver = LocalDriver()
    yield driver
    driver.stop()


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_local_ray_listens_on_loopback_only(local_driver):
    driver = local_driver.get()
    procs = {p.pid: p for p in psutil.Process(driver.pid).children(recursive=True)}
    listening = [(c.laddr.ip, c.laddr.port, procs[c.pid].name())
                 for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in procs]
    names = {name for _, _, name in listening}
    # The check sees Ray's servers, the agents and the task/actor workers.
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names
    assert set(local_driver.worker_pids) <= {pid for pid in procs}
    assert local_driver.url.startswith("http://127.0.0.1:")
    assert [x for x in listening if not _loopback(x[0])] == []


def test_a_local_ray_without_verbose_runs_no_log_monitor(local_driver):
    """raysweep prints a line per epoch, not workers' logs; Ray's log monitor, which only
    streams those to drivers, would look at every log file ten times a second. A run that
    joins this Ray asking for the logs (`--verbose`) is told it gets none. (It joins from
    an environment without RAY_AUTH_MODE, as a fresh shell: the token is found anyway.)"""
    driver = local_driver.get()
    cmdlines = [" ".join(p.cmdline()) for p in psutil.Process(driver.pid).children(recursive=True)]
    assert any("gcs_server" in c for c in cmdlines)
    assert [c for c in cmdlines if "log_monitor.py" in c] == []
    join = subprocess.run(
        [sys.executable, "-c", "import sys; from raysweep.engine import cluster; "
         "cluster.connect(local=True, address=sys.argv[1], verbose=True); cluster.disconnect()",
         local_driver.gcs], capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"},
             "PYTHONPATH": str(ROOT)})
    assert join.returncode == 0, join.stderr[-2000:]
    assert "streams no workers' logs" in join.stderr


def test_a_killed_drivers_ray_processes_are_gone_within_seconds(local_driver):
    driver = local_driver.get()
    session = psutil.Process(driver.pid).children(recursive=True)
    assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= {p.name() for p in session}
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    try:
        while any(_alive(p) for p in session) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the processes
        assert [p.name() for p in session if _alive(p)] == []
    finally:
        for proc in session:
            if _alive(proc):
                proc.kill()
