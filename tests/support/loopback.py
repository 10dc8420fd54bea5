"""A test's own Ray on 127.0.0.1, whatever starts it (the two-node cluster of
tests/engine/test_cluster.py, the fake autoscaling cluster of fake_cluster.py): ports
and a temp dir of its own, so that it never meets the other Rays of this machine."""
from __future__ import annotations

import socket
import subprocess
import tempfile
import time

# The servers of one node besides the GCS and the dashboard, each given a free port.
NODE_PORT_FLAGS = ("node-manager-port", "object-manager-port", "metrics-export-port",
                   "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                   "runtime-env-agent-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe, what: str, timeout: float = 120, proc: subprocess.Popen | None = None):
    """Poll `probe` until it returns something true; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.25)  # between polls of a condition
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class LoopbackRay:
    """The head's GCS and dashboard ports, the cluster's temp dir, and the addresses a
    client uses."""

    def __init__(self, temp_prefix: str):
        self.temp_dir = tempfile.mkdtemp(prefix=temp_prefix, dir="/tmp")  # AF_UNIX paths are short
        self.gcs_port, self.dashboard_port = free_port(), free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @staticmethod
    def node_ports(*more: str) -> list[str]:
        """`ray start` flags giving one node's servers (NODE_PORT_FLAGS and `more`)
        free ports of their own."""
        return [f"--{flag}={free_port()}" for flag in NODE_PORT_FLAGS + more]
