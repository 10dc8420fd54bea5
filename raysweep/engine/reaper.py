"""Stops a local Ray's processes when the driver that started them is gone.

Why: Ray's GCS and raylet die with the driver (PR_SET_PDEATHSIG), but the raylet's
dashboard agent and runtime-env agent, on seeing their raylet die of SIGKILL, first try
to publish its last log lines to the (dead) GCS with a fixed 60 s RPC timeout
(`ray._private.process_watcher.report_raylet_error_logs`) and keep their ports open
meanwhile.

How: `raysweep.engine.cluster.connect` starts this module in its own session (so a Ctrl-C or a
killpg of the driver's group spares it) with a pipe on its stdin, then writes one line to
the pipe: the pids of the processes `ray.init` started (GCS, raylet, dashboard, monitors).
Every `POLL_S` seconds the reaper notes those processes and all their descendants (agents,
workers, the dashboard's modules, data-loader processes). The pipe reaches end-of-file when
the driver closes it (`cluster.disconnect`, after `ray.shutdown`) or dies, however it
dies (the kernel closes its descriptors, SIGKILL included); the reaper then SIGKILLs every
process it noted that is still running (psutil checks the start time, so a reused pid is
never hit) and exits. A worker started within the last `POLL_S` seconds is not noted: it
dies with its raylet, within about two seconds, by Ray's own check (and a data-loader
process with its worker, by torch's).

Processes are found by parentage, not by a marker in their environment: Ray's agents set
their process title, which on Linux overwrites the memory that /proc/PID/environ shows.
It imports neither Ray nor torch, so it starts in a fraction of a second.
"""
from __future__ import annotations

import os
import select
import signal
import sys
from collections import defaultdict

import psutil

# Seconds between two looks at the Ray process tree. A look reads every process's parent
# (~20 ms beside a running study); once a second that was ~1 CPU-second per minute of a
# study, as much as Ray's GCS. What a look can miss is short-lived by then anyway.
POLL_S = 5.0


def descendants(roots: list[psutil.Process]) -> set[psutil.Process]:
    """`roots` that still run and every process below them."""
    children = defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        children[proc.info["ppid"]].append(proc)
    found, todo = set(), [r for r in roots if r.is_running()]
    while todo:
        proc = todo.pop()
        if proc not in found:
            found.add(proc)
            todo += children.get(proc.pid, [])
    return found


def kill(procs: set[psutil.Process]) -> int:
    """SIGKILL those still running; how many. SIGKILL, not SIGTERM: the driver is gone,
    so nothing they could still flush has a reader."""
    killed = 0
    for proc in procs:
        try:
            if proc.is_running():
                proc.kill()
                killed += 1
        except psutil.NoSuchProcess:
            pass
    return killed


def watch(roots: list[psutil.Process], fd: int = 0) -> int:
    """Note the trees under `roots` until `fd` reaches end-of-file; then kill them."""
    noted: set[psutil.Process] = set()
    while True:
        noted = {p for p in noted if p.is_running()} | descendants(roots)
        readable, _, _ = select.select([fd], [], [], POLL_S)
        if readable and not os.read(fd, 4096):
            return kill(noted | descendants(roots))


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break  # the driver closed the pipe before ray.init started anything
        data += chunk
    return data.decode()


def _processes(pids: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return procs


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle
    line = _read_line(0)
    roots = _processes([int(pid) for pid in line.split()])
    if line.endswith("\n"):
        watch(roots)
    else:
        kill(descendants(roots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
