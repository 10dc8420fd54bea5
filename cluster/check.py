"""`make cluster-check`: launch the shipped cluster.yaml for real, through Ray's own cluster
launcher, on a loopback cluster of this machine, and walk docs/cluster.md's steps on it.

The launcher's config is derived from cluster.yaml: the same file mounts, setup commands
and start commands; only the provider (Ray's on-premise `local` provider reaching
127.0.0.1 over SSH), the auth section and the node types are swapped, and the start
commands get the flags that keep this cluster to itself (`derive`). The commands run are
the bash blocks of docs/cluster.md marked `<!-- cluster-check: STEP -->`, in the doc's
order, with the few substitutions printed at the start (`SUBSTITUTIONS`).

The "node" is a unix user of its own (NODE_USER) reached by an sshd of this check on
127.0.0.1 and a port of its own:
  - `ray down` runs `ray stop` on the head, which stops every Ray process its user may
    signal; as NODE_USER that is only this cluster's, never the Rays other sessions run
    here as root (and the shipped start commands' `ray stop` is replaced all the same);
  - the setup commands append to the node's ~/.bashrc and build ~/venv in the node's home,
    which the check makes afresh each time, not in root's;
  - the launching side runs with HOME in the check's folder, so `ray get-auth-token
    --generate` and the launcher's caches stay out of root's home too.
The node's "image" (its ~/.bashrc before setup) gives it the launching machine's installed
packages (what a Deep Learning AMI's preinstalled stack is to a real node), so the setup's
`pip install -c constraints -e` installs raysweep itself and checks every pin against them
without downloading anything (PIP_NO_INDEX): a pin that differs from what runs here fails.

One node only: Ray binds its servers to 127.0.0.1 only when a node's address is exactly
127.0.0.1, and that takes its one-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0),
in which `ray start --address` (a second node joining) is refused; a node on 127.0.0.2
binds its GCS, raylet and agents to every interface. So the head also offers CPUs here.

Run as root (it creates the node user and starts sshd); never inside `make test`.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cluster.md"
SHIPPED = ROOT / "cluster.yaml"
NODE_USER = "raysweep-node"
HEAD_IP = "127.0.0.1"
STEPS = ("up", "dashboard", "run", "report", "down")  # docs/cluster.md's marked blocks, in order
MARK = re.compile(r"<!-- cluster-check: (\w+) -->\s*```bash\n(.*?)```", re.S)
STUDY = "smoke"
# A run of a few seconds per trial: 1 epoch of 256 synthetic images (units: images, epochs);
# ASHA's grace period within that one epoch (smoke's 2 is refused beyond the budget).
TINY_SETS = ("epochs=1", "asha.grace_period=1", "train_size=256", "test_size=128",
             "batch_size=32")
STEP_TIMEOUT_S = 900  # one step's commands, under load


def doc_steps(text: str | None = None) -> list[tuple[str, list[str]]]:
    """docs/cluster.md's marked blocks: (step, its command lines), in the doc's order.
    A line is one command; text after `  # ` is the doc's comment on it."""
    text = DOC.read_text() if text is None else text
    steps = []
    for step, body in MARK.findall(text):
        lines = [re.split(r"\s{2,}# ", line)[0].strip() for line in body.splitlines()]
        steps.append((step, [line for line in lines if line]))
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HEAD_IP, 0))
        return s.getsockname()[1]


# --- the derived launcher config ---

RAY_PORT_FLAGS = ("node-manager-port", "object-manager-port", "metrics-export-port",
                  "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                  "runtime-env-agent-port", "ray-client-server-port")


def derive(shipped: dict, *, key: Path, proxy: str, gcs_port: int, dashboard_port: int,
           temp_dir: str) -> dict:
    """The shipped config with the provider, auth and node types of a one-node loopback
    cluster. File mounts and setup commands are the shipped ones (a relative local path
    made absolute: the launcher reads it from the folder of cluster.yaml). The start
    commands are the shipped ones with `ray stop` replaced and flags appended (the last
    value of a repeated `ray start` flag wins)."""
    config = {k: v for k, v in shipped.items()
              if k not in ("provider", "auth", "available_node_types", "head_node_type")}
    config["cluster_name"] = "raysweep-check"
    config["max_workers"] = 0
    config["provider"] = {"type": "local", "head_ip": HEAD_IP, "worker_ips": []}
    # The proxy command reaches this check's sshd port (the launcher has no port setting);
    # the launcher drops it from the head's copy, where no worker is reached anyway.
    config["auth"] = {"ssh_user": NODE_USER, "ssh_private_key": str(key),
                      "ssh_proxy_command": proxy}
    config["file_mounts"] = {
        remote: local if local.startswith("~") else str((SHIPPED.parent / local).resolve())
        for remote, local in shipped["file_mounts"].items()}
    loopback = [f"--node-ip-address={HEAD_IP}", f"--port={gcs_port}",
                f"--dashboard-port={dashboard_port}", f"--temp-dir={temp_dir}",
                # the shipped head offers no CPU (trials go to workers); here it is the only node
                "--num-cpus=2", f"--object-store-memory={200 * 2**20}",
                *(f"--{flag}={free_port()}" for flag in RAY_PORT_FLAGS)]
    config["head_start_ray_commands"] = _loopback_start(shipped["head_start_ray_commands"],
                                                        loopback)
    config["worker_start_ray_commands"] = []
    return config


def _loopback_start(commands: list[str], flags: list[str]) -> list[str]:
    out = []
    for cmd in commands:
        if cmd.strip() == "ray stop":
            # `ray stop` stops every Ray process its user may signal on this machine; other
            # sessions run Ray here. The node user's fresh home has no Ray of its own to stop.
            out.append("echo 'ray stop: left out on the loopback cluster (cluster/check.py)'")
        elif "ray start" in cmd:
            out.append(f"{cmd} {' '.join(flags)}")
        else:
            out.append(cmd)
    return out


def substitutions(derived: Path, storage: str, local_port: int, dashboard_port: int):
    """(what the doc says, what the check runs, why): the doc's commands on this cluster."""
    sets = " ".join(f"--set {s}" for s in TINY_SETS)
    return [
        ("cluster.yaml", str(derived), "the derived loopback config"),
        ("raysweep run ablations", f"raysweep run {STUDY} {sets}", "a seconds-long study"),
        ("s3://BUCKET/runs", storage, "no S3 here: a folder on the (only) node"),
        (f"ray dashboard {derived}",
         f"ray dashboard {derived} --port {local_port} --remote-port {dashboard_port}",
         "8265 is taken by other sessions' Rays on this machine"),
        ("localhost:8265", f"localhost:{local_port}", "the tunnel's local port"),
        (f"aws s3 sync {storage}/ablations runs/ablations --exclude 'train/*' --exclude 'tune/*'",
         f"mkdir -p runs && ray rsync-down {derived} {storage}/{STUDY}/ runs/{STUDY}/",
         "no S3 here: the run's folder comes from the head over SSH"),
        ("ablations", STUDY, "the study run"),
    ]


def substitute(line: str, table) -> str:
    for doc, here, _ in table:
        line = line.replace(doc, here)
    return line


# --- the node: a unix user, its "image" and an sshd on loopback ---

def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("/usr/sbin/sshd", "openssh-server"), ("rsync", "rsync"))
               if not shutil.which(tool)]
    if missing:
        print(f"cluster-check: installing {' '.join(missing)} (apt-get)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def make_node_user() -> pwd.struct_passwd:
    """NODE_USER with an empty home, as a fresh machine has. Nothing of it may run."""
    try:
        user = pwd.getpwnam(NODE_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", NODE_USER],
                       check=True)
        user = pwd.getpwnam(NODE_USER)
    # no password, and not locked either: sshd (without PAM) turns locked accounts away
    subprocess.run(["usermod", "-p", "*", NODE_USER], check=True)
    left = node_processes(user.pw_uid)
    if left:
        raise SystemExit(f"cluster-check: processes of {NODE_USER} still run (pids "
                         f"{[p.pid for p in left]}), from an earlier check; stop them first")
    home = Path(user.pw_dir)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(mode=0o755)
    os.chown(home, user.pw_uid, user.pw_gid)
    return user


def image_site_packages(folder: Path) -> Path:
    """The launching venv's installed packages (links), less raysweep's own editable
    install: the node installs raysweep from its copy of the checkout."""
    import ray
    site = Path(ray.__file__).resolve().parents[1]
    folder.mkdir()
    for entry in site.iterdir():
        if "raysweep" in entry.name or entry.suffix == ".pth":
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def image_scripts(site: Path, folder: Path) -> Path:
    """The console scripts of the image's packages (`ray` among them), for whichever
    python3 comes first on PATH: pip finds those packages installed and writes no
    scripts of its own for them."""
    import importlib.metadata as metadata
    folder.mkdir()
    for dist in metadata.distributions(path=[str(site)]):
        for ep in dist.entry_points.select(group="console_scripts"):
            module, _, attr = ep.value.partition(":")
            script = folder / ep.name
            script.write_text("#!/usr/bin/env python3\nimport sys\n"
                              f"from {module} import {attr.split('.')[0]}\n"
                              f"sys.exit({attr}())\n")
            script.chmod(0o755)
    return folder


def write_node_image(user, site: Path, scripts: Path, gcs_port: int) -> None:
    """The node's ~/.bashrc before setup (what its machine image would hold): packages
    preinstalled, pip kept off the network, and Ray kept on loopback. Ray's launcher
    sources ~/.bashrc before every command it runs there."""
    home = Path(user.pw_dir)
    lines = [
        "# The loopback node's image (cluster/check.py); setup_commands append below.",
        f"export PYTHONPATH={site} PATH=$PATH:{scripts}",
        # pip checks the pins against the packages above, downloads nothing, and builds
        # raysweep with their setuptools.
        "export PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 PIP_FIND_LINKS=",
        # Ray's one-machine mode: the node address stays 127.0.0.1 and every server binds
        # there (else Ray swaps 127.0.0.1 for the machine's other address). `auto`
        # means this cluster, not one of the other Rays running on this machine.
        f"export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_ADDRESS={HEAD_IP}:{gcs_port}",
        f"export AUTOSCALER_METRIC_PORT={free_port()}",  # default 44217, taken by other Rays
    ]
    (home / ".bashrc").write_text("\n".join(lines) + "\n")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    for path in (home / ".bashrc", ssh):
        os.chown(path, user.pw_uid, user.pw_gid)


class Sshd:
    """sshd on 127.0.0.1:port, accepting only NODE_USER with the check's key."""

    def __init__(self, folder: Path, user, public_key: str):
        self.port = free_port()
        keys = folder / "authorized_keys"
        keys.write_text(public_key)
        keys.chmod(0o644)
        host_key = folder / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {HEAD_IP}:{self.port}", f"HostKey {host_key}",
            f"AuthorizedKeysFile {keys}", f"AllowUsers {NODE_USER}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", f"PidFile {folder / 'sshd.pid'}", "MaxStartups 50",
            "MaxSessions 50", "AcceptEnv none"]) + "\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stdout=open(folder / "sshd.log", "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cluster-check: sshd did not start: "
                                 f"{(folder / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.2)  # polling the port sshd opens

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HEAD_IP, port)) == 0


RELAY = """import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while (b := sys.stdin.buffer.read1(65536)):
        s.sendall(b)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while (b := s.recv(65536)):
    sys.stdout.buffer.write(b); sys.stdout.buffer.flush()
"""


# --- what runs, and where it listens ---

def node_processes(uid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids and uids.real == uid:
            out.append(proc)
    return out


def stop_node(uid: int) -> None:
    """End every process of the node user: all of them are this cluster's."""
    procs = node_processes(uid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def check_listeners(uid: int, ours: set[int]) -> int:
    """Every listening socket of the node user's processes and of this check's own
    process tree is on loopback; returns how many there are."""
    pids = {p.pid for p in node_processes(uid)} | ours
    for child in psutil.Process().children(recursive=True):
        pids.add(child.pid)
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    count, bad = 0, []
    for line in out.splitlines():
        found = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not found & pids:
            continue
        count += 1
        host = line.split()[3].rsplit(":", 1)[0].strip("[]")
        host = host.removeprefix("::ffff:")
        if host == "*" or not ipaddress.ip_address(host).is_loopback:
            bad.append(line)
    if bad:
        raise AssertionError("listening beyond loopback:\n" + "\n".join(bad))
    return count


def run(cmd: str, env: dict, cwd: Path, log, timeout: float = STEP_TIMEOUT_S) -> str:
    print(f"  $ {cmd}", flush=True)
    log.write(f"$ {cmd}\n")
    proc = subprocess.run(cmd, shell=True, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, executable="/bin/bash")
    log.write(proc.stdout + proc.stderr)
    log.flush()
    if proc.returncode:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"exit {proc.returncode}: {cmd}\n{tail}")
    return proc.stdout


def until(probe, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)  # polling a condition


# --- the walk ---

def main() -> int:
    if os.geteuid() != 0:
        print("cluster-check: run as root (it adds the node user and starts sshd)",
              file=sys.stderr)
        return 2
    # a `kill` of the check still runs its `finally`: ray down, sshd stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("cluster-check: terminated"))
    steps = doc_steps()
    assert [s for s, _ in steps] == list(STEPS), f"docs/cluster.md's steps: {steps}"
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="rscheck-", dir="/tmp"))
    work.chmod(0o755)
    user = make_node_user()
    gcs_port, dashboard_port, local_port = free_port(), free_port(), free_port()
    site = image_site_packages(work / "image-site-packages")
    write_node_image(user, site, image_scripts(site, work / "image-bin"), gcs_port)

    home = work / "home"  # the launching side's HOME
    home.mkdir()
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshd = Sshd(work, user, (work / "id_ed25519.pub").read_text())
    relay = work / "relay.py"
    relay.write_text(RELAY)
    proxy = f"{sys.executable} {relay} %h {sshd.port}"

    derived_path = work / "cluster.yaml"
    storage = f"{user.pw_dir}/runs"
    temp_dir = f"/tmp/rscheck-ray-{gcs_port}"  # Ray's sockets: a short path (AF_UNIX)
    derived = derive(yaml.safe_load(SHIPPED.read_text()), key=key, proxy=proxy,
                     gcs_port=gcs_port, dashboard_port=dashboard_port, temp_dir=temp_dir)
    derived_path.write_text(
        "# Derived by cluster/check.py from cluster.yaml: provider, auth and node types\n"
        "# swapped for a one-node loopback cluster; `ray stop` left out of the start\n"
        "# commands (it would stop every Ray on this machine) and flags appended that keep\n"
        "# Ray on 127.0.0.1 and ports of its own.\n"
        + yaml.safe_dump(derived, sort_keys=False))

    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "PIP_")) and k != "PYTHONPATH"}
    env.update(HOME=str(home), PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT),
               RAY_AUTH_MODE="token")
    table = substitutions(derived_path, storage, local_port, dashboard_port)
    print(f"cluster-check: {work} (log: {work / 'check.log'})")
    print(f"  node: user {NODE_USER} at {HEAD_IP}, sshd port {sshd.port}; head GCS "
          f"{HEAD_IP}:{gcs_port}, dashboard {HEAD_IP}:{dashboard_port}")
    print("  docs/cluster.md's commands, with:")
    for doc, here, why in table:
        print(f"    {doc!r} -> {here!r}  ({why})")
    seconds: dict[str, float] = {}
    log = open(work / "check.log", "w")
    up = False
    try:
        # Step 0 of the doc, on "your machine": the pins every node installs, from the
        # versions this checkout's venv runs (a fresh clone's `make env` may have newer
        # releases than the committed file: pandas 3.1.2 against a pin of 3.1.1 made the
        # setup's pip refuse), and the token every node gets a copy of.
        run("python cluster/pin.py", env, ROOT, log)
        run("ray get-auth-token --generate", env, work, log)
        for step, lines in steps:
            print(f"cluster-check: step {step}", flush=True)
            start = time.monotonic()
            up = True  # from here on a failure still runs `ray down`
            commands = [substitute(line, table) for line in lines]
            globals()[f"step_{step}"](commands, env=env, work=work, log=log, user=user,
                                      local_port=local_port, storage=storage)
            seconds[step] = time.monotonic() - start
            up = step != "down"
            if up:
                n = check_listeners(user.pw_uid, {sshd.proc.pid})
                print(f"  {n} listening sockets of the cluster and the check, all on loopback")
    finally:
        if up:
            subprocess.run(["ray", "down", "-y", str(derived_path)], env=env, cwd=work,
                           stdout=log, stderr=log)
        sshd.stop()
        log.close()
    left = node_processes(user.pw_uid)
    assert not left, f"left running after ray down: {[p.cmdline() for p in left]}"
    shutil.rmtree(temp_dir, ignore_errors=True)  # the node's Ray logs; check.log stays
    records = len(list((work / "runs" / STUDY / "records").glob("*.json")))
    print(f"cluster-check: passed: {records} records; seconds: "
          + ", ".join(f"{s} {t:.0f}" for s, t in seconds.items())
          + f"; total {sum(seconds.values()):.0f}")
    return 0


def step_up(commands, *, env, work, log, user, **_):
    for cmd in commands:
        try:
            run(cmd, env, work, log)
        except AssertionError as exc:
            # `ray up` is idempotent and a user runs it again when it fails. Under heavy
            # load Ray 2.60's raylet has been seen to abort at startup (node_manager.cc
            # "Check failed") and `ray start` to time out: one more try, said out loud.
            cause = [l for l in str(exc).splitlines() if "Exception:" in l or "Error" in l]
            print(f"  failed ({(cause or ['see check.log'])[-1].strip()[:200]}); once more:",
                  flush=True)
            stop_node(user.pw_uid)  # what the shipped `ray stop` does on a node of its own
            run(cmd, env, work, log)
    # what setup built: the pinned Ray, and raysweep from the node's copy of the checkout
    home = Path(user.pw_dir)
    assert (home / "venv" / "bin" / "raysweep").exists(), "setup built no ~/venv with raysweep"
    assert "raysweep env" in (home / ".bashrc").read_text()


def step_dashboard(commands, *, env, work, log, local_port, **_):
    tunnel_cmd, *rest = commands
    assert tunnel_cmd.startswith("ray dashboard"), tunnel_cmd
    print(f"  $ {tunnel_cmd} &", flush=True)
    tunnel = subprocess.Popen(tunnel_cmd, shell=True, env=env, cwd=work, stdout=log,
                              stderr=log, start_new_session=True, executable="/bin/bash")
    try:
        until(lambda: _port_open(local_port) or tunnel.poll() is not None,
              "the dashboard tunnel", timeout=60)
        assert tunnel.poll() is None, "ray dashboard exited"
        for cmd in rest:
            out = run(cmd, env, work, log)
            if cmd.startswith("curl"):
                assert '"ray_version"' in out, out[-500:]
        # without the token the dashboard refuses the same request
        req = urllib.request.Request(f"http://localhost:{local_port}/api/version")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("the dashboard answered without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code in (401, 403), exc.code
    finally:
        os.killpg(tunnel.pid, signal.SIGTERM)
        tunnel.wait(timeout=30)


def step_run(commands, *, env, work, log, **_):
    for cmd in commands:
        out = run(cmd, env, work, log)
        print("\n".join("    " + line for line in out.strip().splitlines()[-6:]))


def step_report(commands, *, env, work, log, **_):
    for cmd in commands:
        run(cmd, env, work, log)
    report = work / "runs" / STUDY / "report"
    assert any(report.glob("*.md")), f"no tables in {report}"


def step_down(commands, *, env, work, log, user, **_):
    for cmd in commands:
        run(cmd, env, work, log)
    until(lambda: not node_processes(user.pw_uid), f"{NODE_USER}'s processes to end", 60)


if __name__ == "__main__":
    sys.exit(main())
