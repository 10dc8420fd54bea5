"""Connecting to Ray: an in-process local cluster (`--local`) or a running one."""
from __future__ import annotations

import os

import ray

DASHBOARD_HOST = "127.0.0.1"  # never bind the dashboard to public interfaces by default


def connect(local: bool, address: str | None, verbose: bool = False) -> str | None:
    """Start or join Ray; returns the dashboard URL.

    A local Ray always gets its dashboard (on 127.0.0.1): besides showing the trials,
    it serves the State API that Ray Train's placement-group cleaner polls; without it
    a finished trial's CPUs are never given back and the next trial waits forever.

    Workers' own logs stay in Ray's log folder (and the dashboard) unless `verbose`:
    raysweep prints one line per trial epoch instead."""
    env = {"RAY_TRAIN_V2_ENABLED": "1"}
    os.environ.update(env)
    common = dict(runtime_env={"env_vars": env}, log_to_driver=verbose,
                  logging_level="WARNING", configure_logging=True)
    if local or (address is None and not _cluster_running()):
        ctx = ray.init(address="local", include_dashboard=True,
                       dashboard_host=DASHBOARD_HOST, **common)
    else:
        ctx = ray.init(address=address or "auto", **common)
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


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
