"""Connecting to Ray: an in-process local cluster (`--local`) or a running one; what an
autoscaling cluster can grow into."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import psutil
import ray
import yaml
from ray._private import ray_constants, services
from ray._private.authentication.authentication_token_setup import (
    maybe_enable_token_auth_if_token_available)

from raysweep.engine import reaper
from raysweep.errors import StudyError
from raysweep.core.planning import Autoscaler, NodeType

# The dashboard asks for the cluster's token (Ray 2.60 turns token auth on for local
# clusters); printed with its URL so a user knows where to find it.
TOKEN_HELP = "the dashboard asks for a token: paste the output of `ray get-auth-token`"
DASHBOARD_HOST = "127.0.0.1"  # never bind the dashboard to public interfaces by default
GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"  # how a locally started Ray is given its GCS port
REAPER_WAIT_S = 10.0  # seconds disconnect() waits for the reaper's last sweep

_reaper: subprocess.Popen | None = None  # the reaper of the local Ray this process started


def connect(local: bool, address: str | None, verbose: bool = False) -> str | None:
    """Start or join Ray; returns the dashboard URL.

    A local Ray always gets its dashboard (on 127.0.0.1): besides showing the trials,
    it serves the State API that Ray Train's placement-group cleaner polls; without it
    a finished trial's CPUs are never given back and the next trial waits forever.

    A local Ray listens on 127.0.0.1 only (GCS, raylet, object manager, workers, dashboard,
    its agents and every metrics exporter: `_loopback_node`), and its processes are
    SIGKILLed within about a second when this driver is gone, however it dies
    (`raysweep.engine.reaper`). Not Ray's and still on all interfaces: while a Train worker group
    runs (`--train-workers`, or a trial with several workers), its rank 0 holds torch's
    TCPStore for the DDP rendezvous, which torch binds to "::" unless it is handed a
    listening socket (`TCPStore(master_listen_fd=...)`); inline trials have none.

    Workers' own logs stay in Ray's log folder (and the dashboard) unless `verbose`:
    raysweep prints one line per trial epoch instead, and a local Ray started without
    `verbose` runs no log monitor (`_stop_log_monitor`).

    Train's state tracking is on: Train's State API (/api/train/v2/runs/v1; Ray 2.60's
    open-source dashboard has no Train tab) then lists every trial's Train run by name
    (see `trainable.train_run_name`) with its controller and workers (node, pid, rank)."""
    env = {"RAY_TRAIN_V2_ENABLED": "1", "RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
    if local:
        # Train's PreemptionWatcher (one actor per trial) watches for a cloud node being
        # drained; a machine-local Ray has none to drain, and each actor is a process start.
        env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
    os.environ.update(env)
    if local and address:
        ctx = _join_local(address, env, verbose)
    elif local or (address is None and not _cluster_running()):
        ctx = _start_local(env, verbose)
    else:
        gcs = services.canonicalize_bootstrap_address_or_die(address or "auto")
        ctx = ray.init(address=address or "auto", **_init_options(env, gcs, verbose))
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def _init_options(env: dict, gcs: str, verbose: bool) -> dict:
    # Train's placement-group cleaner queries the State API from inside the cluster; it
    # finds its cluster by RAY_ADDRESS, else by looking for GCS processes on the machine,
    # which fails when two Rays run there, and then no finished trial's resources are
    # ever given back. So every worker of this study gets the address.
    return dict(runtime_env={"env_vars": {**env, "RAY_ADDRESS": gcs}}, log_to_driver=verbose,
                logging_level="WARNING", configure_logging=True)


def _join_local(address: str, env: dict, verbose: bool):
    """`--local --address ADDR`: join a Ray already running on this machine instead of
    starting one (seconds saved per run, e.g. while debugging a study over and over).
    Loopback stays loopback (`_loopback_node`); the Ray is not this driver's, so no reaper
    and, at the end, only a disconnect. Token auth: Ray turns it on by itself only for a
    cluster it finds (`address="auto"`), never for an explicit address; a Ray of this
    machine has its token where this user's Ray keeps it (~/.ray/auth_token), so it is
    turned on here as `auto` would (RAY_AUTH_MODE, when set, still decides)."""
    host = address.rsplit(":", 1)[0]
    if not _on_this_machine(host):
        raise StudyError(f"--address={address!r} with --local must be a Ray on this machine; "
                         f"allowed: 127.0.0.1:PORT or an address of this machine's own")
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    with _loopback_node():
        gcs = services.canonicalize_bootstrap_address_or_die(address)
        ctx = ray.init(address=address, **_init_options(env, gcs, verbose))
    if verbose and not _log_monitor_runs(gcs):
        warnings.warn(f"--verbose: the Ray at {address} streams no workers' logs (it was "
                      f"started without --verbose); read them in its dashboard or with "
                      f"`ray logs`", RuntimeWarning, stacklevel=3)
    return ctx


def _log_monitor_runs(gcs_address: str) -> bool:
    """Whether the Ray at `gcs_address` (on this machine) has its log monitor."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(a.endswith("log_monitor.py") for a in cmdline) \
                and f"--gcs-address={gcs_address}" in cmdline:
            return True
    return False


def _on_this_machine(host: str) -> bool:
    if host in ("localhost", "auto"):
        return True
    try:
        ips = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    own = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return all(ip.startswith("127.") or ip == "::1" or ip in own for ip in ips)


def _start_local(env: dict, verbose: bool):
    global _reaper
    gcs_port = _free_port()
    _reaper = _start_reaper()
    before = {p.pid for p in psutil.Process().children()}
    try:
        with _loopback_node(), _environ({GCS_PORT_ENV: str(gcs_port)}):
            gcs = f"{services.get_node_ip_address()}:{gcs_port}"
            ctx = ray.init(address="local", include_dashboard=True,
                           dashboard_host=DASHBOARD_HOST, **_init_options(env, gcs, verbose))
    except BaseException:
        _tell_reaper(before)
        disconnect()  # a ray.init that failed half-way leaves nothing running either
        raise
    _tell_reaper(before)
    if not verbose:
        _stop_log_monitor()
    return ctx


def _stop_log_monitor() -> None:
    """Stop the local Ray's log monitor when no driver prints workers' logs. It exists only
    to stream them to drivers (`log_to_driver`), and it looks at every log file ten times a
    second: as a study's log folder fills, ~1.7 CPU-seconds per minute (as much as the
    raylet and the GCS together). The files themselves stay, for the dashboard and for
    `ray logs`. `ray.init` has no switch for it; its node object can stop it."""
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        node.kill_log_monitor(check_alive=False)


def _tell_reaper(before: set[int]) -> None:
    """Send the reaper the pids of the processes started since `before` (by ray.init)."""
    started = [p.pid for p in psutil.Process().children() if p.pid not in before]
    try:
        _reaper.stdin.write(f"{' '.join(map(str, started))}\n".encode())
        _reaper.stdin.flush()
    except BrokenPipeError:
        warnings.warn("raysweep: the Ray reaper is gone; if this driver is killed, Ray's "
                      "agents may outlive it by a minute", RuntimeWarning, stacklevel=3)


@contextlib.contextmanager
def _loopback_node():
    """Ray binds each server to its node's address, or to 127.0.0.1 only when that address
    is loopback. `ray.init` has no switch for it: it turns `_node_ip_address="127.0.0.1"`
    into the machine's public address, except in its one-machine mode (the default on
    Windows/macOS, chosen on Linux with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), where the
    node address is 127.0.0.1. That mode only refuses `ray start --address` (joining
    other machines), which a local study never does. The variable is read when Ray is
    imported, so the already imported constant is set too; Ray's processes inherit the
    variable and agree."""
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environ({ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for the processes started inside; then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_reaper() -> subprocess.Popen:
    """`raysweep.engine.reaper` in its own session (a Ctrl-C or a killpg of the driver's group
    spares it), reading a pipe whose write end only this process holds."""
    package_root = str(Path(reaper.__file__).resolve().parents[2])
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from raysweep.engine.reaper import main; sys.exit(main())")
    return subprocess.Popen([sys.executable, "-c", code, package_root], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, start_new_session=True)


def _stop_reaper() -> None:
    """Close the reaper's pipe: it kills what `ray.shutdown` left behind, then exits."""
    global _reaper
    if _reaper is None:
        return
    _reaper.stdin.close()
    try:
        _reaper.wait(timeout=REAPER_WAIT_S)
    except subprocess.TimeoutExpired:
        pass  # it finishes on its own; the driver need not wait longer
    _reaper = None


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
    _stop_reaper()


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
    autoscaler = autoscaler_from_config(config)
    # Ray's on-premise provider (`type: local`) has one node type for the head and its
    # fixed worker IPs: no type to grow, so planning uses the nodes that are up.
    return autoscaler if autoscaler.node_types else None


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
