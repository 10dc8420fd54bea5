"""Connecting to Ray: an in-process local cluster (`--local`) or a running one; what an
autoscaling cluster can grow into."""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import psutil
import ray
import yaml
from ray._private import services

from raysweep.planning import Autoscaler, NodeType

DASHBOARD_HOST = "127.0.0.1"  # never bind the dashboard to public interfaces by default
GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"  # how a locally started Ray is given its GCS port


def connect(local: bool, address: str | None, verbose: bool = False) -> str | None:
    """Start or join Ray; returns the dashboard URL.

    A local Ray always gets its dashboard (on 127.0.0.1): besides showing the trials,
    it serves the State API that Ray Train's placement-group cleaner polls; without it
    a finished trial's CPUs are never given back and the next trial waits forever.

    Workers' own logs stay in Ray's log folder (and the dashboard) unless `verbose`:
    raysweep prints one line per trial epoch instead.

    Train's state tracking is on: the dashboard's Train tab (and its State API,
    /api/train/v2/runs/v1) then lists every trial's Train run by name (see
    `driver.train_run_name`) with its controller and workers (node, pid, rank)."""
    env = {"RAY_TRAIN_V2_ENABLED": "1", "RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
    os.environ.update(env)
    start = local or (address is None and not _cluster_running())
    gcs_port = _free_port() if start else None
    # Train's placement-group cleaner queries the State API from inside the cluster; it
    # finds its cluster by RAY_ADDRESS, else by looking for GCS processes on the machine,
    # which fails when two Rays run there, and then no finished trial's resources are
    # ever given back. So every worker of this study gets the address.
    gcs = (f"{services.get_node_ip_address()}:{gcs_port}" if start
           else services.canonicalize_bootstrap_address_or_die(address or "auto"))
    common = dict(runtime_env={"env_vars": {**env, "RAY_ADDRESS": gcs}}, log_to_driver=verbose,
                  logging_level="WARNING", configure_logging=True)
    if start:
        os.environ[GCS_PORT_ENV] = str(gcs_port)
        try:
            ctx = ray.init(address="local", include_dashboard=True,
                           dashboard_host=DASHBOARD_HOST, **common)
        finally:
            os.environ.pop(GCS_PORT_ENV)
    else:
        ctx = ray.init(address=address or "auto", **common)
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _cluster_running() -> bool:
    if os.environ.get("RAY_ADDRESS"):
        return True
    try:
        from ray._private.services import find_gcs_addresses
        return bool(find_gcs_addresses())
    except Exception:  # an internal helper; if it moves, fall back to starting locally
        return False


def disconnect() -> None:
    if ray.is_initialized():
        ray.shutdown()


# The autoscaler's process on the head, as `ray start --head --autoscaling-config=PATH`
# starts it (v1 is 2.60's default; v2 runs when RAY_enable_autoscaler_v2=1).
MONITOR_SCRIPTS = ("autoscaler/_private/monitor.py", "autoscaler/v2/monitor.py")
# Tune's limit on trials waiting for their placement groups (its default: 200, or the
# cluster's CPUs × 1.1 when more; with a custom searcher, max_concurrent_trials or 1).
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


def find_autoscaler() -> Autoscaler | None:
    """The worker node types the connected cluster's autoscaler may start, read at run
    time from the config its monitor process runs with (`ray up` writes it to
    ~/ray_bootstrap_config.yaml on the head, with every type's resources filled in).

    None when no autoscaler of this cluster runs on this machine: a `--local` run, a
    cluster of fixed nodes, or a driver that is not on the head. Planning then uses the
    alive nodes alone. (Ray 2.60 publishes the node types nowhere else: the GCS's
    ClusterConfig, which Train reads, stays empty under the autoscaler `ray up` starts.)"""
    path = _autoscaling_config(ray.get_runtime_context().gcs_address)
    if path is None:
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        warnings.warn(f"the autoscaler's config {path} is unreadable ({exc}); trials are "
                      f"planned on the nodes that are up", stacklevel=2)
        return None
    return autoscaler_from_config(config)


def autoscaler_from_config(config: dict) -> Autoscaler:
    """The worker node types of a cluster launcher config (`available_node_types`), with
    Ray's defaults: a type without `max_workers` may use the cluster's whole
    `max_workers`; the head's type starts no worker nodes."""
    cap = config.get("max_workers")
    head = config.get("head_node_type")
    types = tuple(
        NodeType(name, {k: float(v) for k, v in (kind.get("resources") or {}).items()},
                 int(kind.get("max_workers", cap or 0)))
        for name, kind in (config.get("available_node_types") or {}).items() if name != head)
    return Autoscaler(types, None if cap is None else int(cap))


def _autoscaling_config(gcs_address: str) -> Path | None:
    """The `--autoscaling-config` of the monitor process that serves `gcs_address`."""
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        args = proc.info["cmdline"] or []
        if not any(a.endswith(MONITOR_SCRIPTS) for a in args[:3]):
            continue
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if flags.get("gcs-address") == gcs_address and flags.get("autoscaling-config"):
            # A relative path is the monitor's own (`ray start` passes it on as given).
            return Path(proc.info["cwd"] or "/") / os.path.expanduser(flags["autoscaling-config"])
    return None


def allow_pending_trials(trials: int) -> None:
    """Let Tune keep every trial of a study waiting for its placement group: the waiting
    placement groups are the demand the autoscaler adds nodes for. Read when a Tuner
    starts, so call it before `Tuner.fit`."""
    os.environ[PENDING_TRIALS_ENV] = str(max(1, trials))
