"""Running on a cluster: the launcher config, multi-node resource planning, storage
URIs, a real two-node Ray on loopback (DDP across nodes, the Jobs API) and the dashboard
and State API of a --local run.

The Ray clusters these tests start use token authentication with a token of their own
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN), handed to every process that talks to them: the
`ray` CLI, `raysweep run` and the dashboard's HTTP API (an `Authorization: Bearer` header).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from support import factories
from support.studies import TINY, write_study
from support.loopback import LoopbackRay, wait_for
from raysweep.store import records, storage
from raysweep.store.records import check_writable
from raysweep.errors import StudyError
from raysweep.core.planning import plan_resources
from raysweep.store.provenance import write_provenance
from raysweep.study.parse import load_study, parse_study
from raysweep.engine.trainable import train_run_name
from raysweep.core.trial import TrialResources

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
TOKEN = secrets.token_hex(32)
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


# --- the launcher config (offline: Ray's own schema and defaults, no cloud calls) ---

def test_cluster_yaml_passes_the_launchers_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(config)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and "GPU" not in head["resources"]
    gpus = {name: t["resources"]["GPU"] for name, t in types.items() if "GPU" in t["resources"]}
    assert sorted(gpus.values()) == [1, 8]
    assert all(0 <= types[n]["min_workers"] <= types[n]["max_workers"] for n in gpus)
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    assert "~/raysweep" in prepared["file_mounts"]
    assert any("pip install" in c and "~/raysweep" in c for c in prepared["setup_commands"])
    text = (ROOT / "cluster.yaml").read_text().lower()
    assert not any(k in text for k in ("aws_access_key_id", "aws_secret", "ssh_private_key"))


# --- planning from per-node resources ---

def _study(**resources):
    return parse_study({"name": "c", "models": ["resnet_20"], "resources": resources},
                       "c.yaml").resources


def _total(nodes):
    return {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}


def test_a_trial_needing_more_gpus_than_a_node_spreads_over_nodes():
    nodes = [{"CPU": 0}, {"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]
    plan = plan_resources(_study(workers_per_trial=2), _total(nodes), nodes)
    assert plan.resources == TrialResources(2, 1.0, 1.0) and plan.max_concurrent == 1
    # an 8-GPU node and two 1-GPU nodes: 10 one-GPU workers, one 8-worker DDP trial at a time
    nodes = [{"CPU": 0}, {"CPU": 96, "GPU": 8}, {"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]
    assert plan_resources(_study(workers_per_trial=8), _total(nodes), nodes).max_concurrent == 1
    assert plan_resources(_study(), _total(nodes), nodes).max_concurrent == 10


def test_concurrency_counts_whole_workers_per_node():
    nodes = [{"CPU": 1.5}, {"CPU": 1.5}]  # 3 CPUs in all, but only one 1-CPU worker per node
    assert plan_resources(_study(), _total(nodes), nodes).max_concurrent == 2
    nodes = [{"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}]
    assert plan_resources(_study(gpus_per_worker=0.25), _total(nodes), nodes).max_concurrent == 8


def test_a_worker_bigger_than_every_node_is_refused():
    nodes = [{"CPU": 0}, {"CPU": 4}, {"CPU": 4}]
    with pytest.raises(StudyError, match="needs 6 CPU on one node, but the largest node has 4 CPU;"):
        plan_resources(_study(cpus_per_worker=6), _total(nodes), nodes)
    nodes = [{"CPU": 3}, {"CPU": 3}, {"CPU": 2}]  # 8 CPUs, but one 2-CPU worker per node
    with pytest.raises(StudyError, match="nodes hold only 3 workers of 2 CPU each; allowed: <= 3"):
        plan_resources(_study(cpus_per_worker=2, workers_per_trial=4), _total(nodes), nodes)


# --- storage URIs ---

def test_file_uris_and_plain_paths_are_the_same_run_folder(tmp_path):
    assert storage.run_location(f"file://{tmp_path}", "s") == tmp_path.resolve() / "s"
    assert storage.run_location(str(tmp_path), "s") == tmp_path.resolve() / "s"


def test_records_and_provenance_go_through_a_pyarrow_filesystem(tmp_path):
    run_dir = storage.run_location("mock:///bucket/runs", "study")
    assert isinstance(run_dir, storage.RemotePath) and str(run_dir) == "mock://bucket/runs/study"
    check_writable(run_dir)
    one, two = factories.record(factories.spec(seed=1)), factories.record(factories.spec(seed=2))
    records.write_record(run_dir, dataclasses.replace(two, status="running"))
    records.write_record(run_dir, one)
    records.write_record(run_dir, two)
    assert [(r.key, r.status) for r in records.read_records(run_dir)] == sorted(
        [(one.key, "completed"), (two.key, "completed")])
    assert records.read_record(run_dir, one.key) == one
    assert records.read_record(run_dir, "nope") is None
    study = load_study(str(write_study(tmp_path, "uri", models=["resnet_20"])))
    write_provenance(run_dir, study)
    write_provenance(run_dir, study)
    assert len(json.loads((run_dir / "provenance.json").read_text())["runs"]) == 2
    names = {i.base_name for i in run_dir.fs.get_file_info(
        pafs.FileSelector(run_dir.path, recursive=True))}
    assert {"study.yaml", "provenance.json", f"{one.key}.json", f"{two.key}.json"} <= names
    assert ".write-test" not in names


# --- a real two-node Ray on loopback ---

def _get(url: str, timeout: float = 10):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class LoopbackCluster(LoopbackRay):
    """`ray start --head` and one `ray start --address` on 127.0.0.1, each with 1 CPU, on
    ports and a temp dir of their own (never `ray stop`: other Rays may run here)."""

    def __init__(self, folder: Path):
        super().__init__("rs")
        self.folder = folder
        self.env = {**os.environ, **AUTH, "RAY_TRAIN_V2_ENABLED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []

    def _node(self, index: int, *args: str, ports: tuple[str, ...] = ()) -> None:
        cmd = [RAY, "start", "--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--object-store-memory={200 * 2**20}",
               *self.node_ports(*ports), *args]
        log = open(self.folder / f"node{index}.log", "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self) -> "LoopbackCluster":
        self._node(0, "--head", f"--port={self.gcs_port}", f"--temp-dir={self.temp_dir}",
                   "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={self.dashboard_port}",
                   ports=("ray-client-server-port",))
        wait_for(lambda: _get(f"{self.dashboard}/api/version"), "the head's dashboard",
                 proc=self.procs[0])
        self._node(1, f"--address={self.address}")
        wait_for(lambda: len(self.alive_nodes()) == 2, "the second node", proc=self.procs[1])
        return self

    def alive_nodes(self) -> list[dict]:
        nodes = _get(f"{self.dashboard}/api/v0/nodes")["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)  # `ray start --block` stops its processes, then may hang
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    cluster = LoopbackCluster(tmp_path_factory.mktemp("two_nodes"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_job_runs_a_two_worker_trial_across_two_nodes(two_nodes, tmp_path):
    """`ray job submit` to the head's dashboard runs `raysweep run --address ...` there;
    its one trial needs 2 one-CPU workers and each node has 1 CPU, so DDP (gloo) spans
    both nodes, and the records land under the file:// storage URI."""
    path = write_study(tmp_path, "ddp", defaults={**TINY, "epochs": 1}, models=["resnet_20"],
                       asha={"enabled": False}, resources={"workers_per_trial": 2})
    submission = f"raysweep-ddp-{secrets.token_hex(4)}"
    submit = subprocess.run(
        [RAY, "job", "submit", f"--address={two_nodes.dashboard}",
         f"--submission-id={submission}", "--", sys.executable, "-m", "raysweep.cli", "run",
         str(path), "--address", two_nodes.address, "--storage", f"file://{tmp_path}/runs"],
        env=two_nodes.env, capture_output=True, text=True, timeout=300)
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
    assert _get(f"{two_nodes.dashboard}/api/jobs/{submission}")["status"] == "SUCCEEDED"
    assert "raysweep: Ray dashboard at http://127.0.0.1:" in submit.stdout
    [record] = records.read_records(tmp_path / "runs" / "ddp")
    assert record.status == "completed" and record.segments[0].workers == 2
    hosts = record.segments[0].hosts.split(",")
    node_ids = {n["node_id"][:12] for n in two_nodes.alive_nodes()}
    assert len(hosts) == 2 and {h.split("/")[1] for h in hosts} == node_ids
    run_dir = tmp_path / "runs" / "ddp"
    assert (run_dir / "provenance.json").is_file()
    assert (run_dir / "train" / train_run_name(load_study(str(path)).trials()[0])).is_dir()


# --- the dashboard and the State API while a --local study runs ---

@pytest.mark.slow
def test_the_dashboard_shows_the_running_trial_and_its_workers(tmp_path):
    path = write_study(tmp_path, "dash", defaults={**TINY, "epochs": 1},
                       groups={"depth": {"baseline": "resnet_20", "variants": {}}},
                       asha={"enabled": False})
    expected = train_run_name(load_study(str(path)).trials()[0])
    assert expected.startswith("depth.baseline-s0.resnet_20-")  # group, variant, seed, key
    env = {**os.environ, **AUTH}
    env.pop("RAY_ADDRESS", None)
    # --train-workers: Train's State API lists Train runs, which inline --local trials skip.
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", str(path), "--local",
                             "--train-workers", "--storage", str(tmp_path / "runs")],
                            env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = _dashboard_url(proc)
        assert "ray_version" in _get(f"{url}/api/version")
        run = wait_for(lambda: _train_run(url, expected), "the Train run with its workers",
                       proc=proc)
        workers = {w["actor_id"]: w for w in run["attempts"][-1]["workers"]}
        actors = {a["actor_id"]: a for a in _get(f"{url}/api/v0/actors?limit=1000")
                  ["data"]["result"]["result"]}
        assert all(actors[a]["class_name"] == "RayTrainWorker" for a in workers)
        assert actors[run["controller_actor_id"]]["class_name"] == "TrainController"
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _dashboard_url(proc) -> str:
    for line in proc.stdout:
        if line.startswith("raysweep: Ray dashboard at "):
            return line.split(" at ", 1)[1].strip()
    raise AssertionError(f"no dashboard URL printed (exit code {proc.wait()})")


def _train_run(url: str, name: str) -> dict | None:
    runs = _get(f"{url}/api/train/v2/runs/v1")["train_runs"]
    found = [r for r in runs if r["name"] == name and r["attempts"]
             and r["attempts"][-1]["workers"]]
    return found[0] if found else None
