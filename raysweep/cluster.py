"""Connecting to Ray: an in-process local cluster (`--local`) or a running one."""
from __future__ import annotations

import os
import socket

import ray
from ray._private import services

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
