"""A local autoscaling Ray cluster for tests, built with Ray's fake multi-node provider.

`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=CONFIG` with
`provider: {type: fake_multinode}`: Ray's own autoscaler (v1, 2.60's default) reads the
node types from CONFIG and, for demand it cannot place, "launches" a node by starting a
raylet and its agents on this machine; terminating a node kills them. Every node shares
this filesystem, so a local folder is shared storage.

Other Rays run on this machine (other test sessions), so the cluster keeps to itself:
ports of its own, its own temp dir, token authentication with its own token, every
process on 127.0.0.1, and it is stopped by killing the processes of its own session,
never with `ray stop` (`ray.cluster_utils.AutoscalingCluster` runs `ray stop --force`,
which would kill every Ray here).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from support.loopback import LoopbackRay, free_port, wait_for

RAY = str(Path(sys.executable).with_name("ray"))
ROOT = Path(__file__).resolve().parents[2]   # the checkout under test
HEAD_TYPE = "ray.head.default"   # the fake provider's name for the head's node type


@dataclass(frozen=True)
class NodeCount:
    """One reading of the autoscaler's own status (what `ray status` prints)."""
    seconds: float               # since the watch began
    active: dict[str, int]       # worker nodes up, by node type
    launching: int               # worker nodes asked for and not up yet

    @property
    def workers(self) -> int:
        return sum(self.active.values())


class FakeAutoscalingCluster(LoopbackRay):
    """A head with `head_cpus` CPUs and `worker_types` (launcher `available_node_types`
    entries) that the autoscaler starts on demand, up to `max_workers` nodes in all."""

    def __init__(self, folder: Path, worker_types: dict[str, dict], head_cpus: int = 0,
                 max_workers: int = 3, idle_timeout_minutes: float = 1.0):
        super().__init__("rsfake")
        self.folder = folder
        self.token = secrets.token_hex(32)
        self.head_cpus = head_cpus
        self.config = {
            "cluster_name": "raysweep-fake", "max_workers": max_workers,
            "upscaling_speed": 1.0, "idle_timeout_minutes": idle_timeout_minutes,
            "provider": {"type": "fake_multinode", "gcs_address": self.address,
                         # the fake provider's settings (Ray's fake_multi_node/example.yaml)
                         "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": {
                HEAD_TYPE: {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
                **worker_types},
            "head_node_type": HEAD_TYPE,
            # The launcher's keys: the fake provider runs no setup, but the schema wants them.
            "auth": {}, "docker": {}, "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
            "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [],
        }
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
            "RAY_FAKE_CLUSTER": "1",
            # Ray resolves 127.0.0.1 to the host's address (and binds its servers to it)
            # unless multi-machine clusters are off: off, every node of this cluster,
            # and every client, stays on loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",           # seconds; default 5
            # A killed node is found dead after 3 failed health checks 1 s apart (default
            # 5, 3 s apart); a live one still has 3 × 10 s to answer.
            "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
            "AUTOSCALER_METRIC_PORT": str(free_port()),    # default 44217, shared by every Ray
            "RAY_TRAIN_V2_ENABLED": "1",
            # Every node's workers import this checkout (a launched cluster installs it
            # on every node: cluster.yaml's file_mounts and setup_commands).
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.head: subprocess.Popen | None = None

    def start(self) -> "FakeAutoscalingCluster":
        config = self.folder / "autoscaling.yaml"
        config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        ports = self.node_ports("ray-client-server-port")
        cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={self.gcs_port}", f"--num-cpus={self.head_cpus}", "--num-gpus=0",
               f"--autoscaling-config={config}", f"--temp-dir={self.temp_dir}",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={self.dashboard_port}", "--disable-usage-stats",
               f"--object-store-memory={200 * 2**20}", *ports]
        log = open(self.folder / "head.log", "w")
        self.head = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(self.node_count, "the autoscaler's first status", proc=self.head)
        return self

    # --- what the cluster reports (the dashboard's HTTP API, as a user's browser sees it) ---

    def get(self, path: str, timeout: float = 10):
        req = urllib.request.Request(f"{self.dashboard}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def node_count(self, since: float = 0.0) -> NodeCount | None:
        """The autoscaler's latest status (the dashboard's copy of what `ray status`
        prints); None until the autoscaler has written one. The dashboard camel-cases
        every key, node type names included: name types without underscores."""
        status = self.get("/api/cluster_status")["data"].get("clusterStatus")
        report = (status or {}).get("autoscalerReport")
        if not report:
            return None
        active = {t: n for t, n in (report["activeNodes"] or {}).items() if t != HEAD_TYPE}
        launching = sum((report["pendingLaunches"] or {}).values()) + len(report["pendingNodes"])
        return NodeCount(round(time.monotonic() - since, 1), active, launching)

    def train_runs(self) -> list[dict]:
        """Every Ray Train run the cluster has seen (Train's State API): name,
        attempts, and each attempt's workers with their node."""
        return self.get("/api/train/v2/runs/v1")["train_runs"]

    def watch(self, interval: float = 1.0) -> "Watch":
        """Record the autoscaler's node counts in the background until the Watch stops."""
        return Watch(self, interval)

    # --- processes ---

    def session_processes(self) -> list[psutil.Process]:
        """Every process this cluster started: the head's `ray start` session holds them
        all (the autoscaler starts its fake nodes from inside it)."""
        out = []
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.head.pid:
                    out.append(proc)
            except (ProcessLookupError, PermissionError):
                continue
        return out

    def raylet_pid(self, node_id: str) -> int:
        """The raylet of one node (its command line names the node's id)."""
        for proc in self.session_processes():
            try:
                if proc.name() == "raylet" and f"--node_id={node_id}" in proc.cmdline():
                    return proc.pid
            except psutil.Error:
                continue
        raise AssertionError(f"no raylet of node {node_id} in this cluster")

    def stop(self) -> None:
        if self.head is None:
            return
        # A throwaway cluster: SIGKILL every process of its session (SIGTERM would have
        # `ray start --block` drain the head for 30 s first).
        for proc in self.session_processes():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        self.head.wait(timeout=30)
        wait_for(lambda: not [p for p in self.session_processes() if _running(p)],
                 "the cluster's processes to exit", timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Watch:
    """The autoscaler's node counts, read every `interval` seconds on a thread."""

    def __init__(self, cluster: FakeAutoscalingCluster, interval: float):
        self.cluster, self.interval = cluster, interval
        self.counts: list[NodeCount] = []
        self._begin = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                count = self.cluster.node_count(self._begin)
            except OSError:
                continue
            if count and (not self.counts or (count.active, count.launching) !=
                          (self.counts[-1].active, self.counts[-1].launching)):
                self.counts.append(count)   # only the changes

    def seconds(self) -> float:
        """Seconds since the watch began (the clock of its counts)."""
        return time.monotonic() - self._begin

    def stop(self) -> list[NodeCount]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.counts
