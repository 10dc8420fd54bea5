"""Elastic studies on an autoscaling cluster (issue 15).

Planning against the autoscaler's node types is pure (no Ray). The rest runs `raysweep
run` on a real autoscaling Ray built with Ray's fake multi-node provider
(tests/support/fake_cluster.py): a head with no CPUs and a worker type `cpu1x` of 1 CPU, 0 to 2
nodes. The autoscaler starts and stops those nodes as local processes on 127.0.0.1;
the studies' folders are local, which every node of it shares.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from support.studies import TINY, write_study
from support.cli import one_error_line
from support.factories import spec
from support.fake_cluster import FakeAutoscalingCluster, NodeCount
from support.loopback import wait_for
from raysweep.store import records
from raysweep.engine.cluster import _autoscaling_config, allow_pending_trials, autoscaler_from_config
from raysweep.errors import ResourceError
from raysweep.core.planning import (HEAD, Autoscaler, NodeType, ResourcesConfig, plan_resources,
                                    plan_trials)
from raysweep.study.parse import RESOURCES_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
HEAD_NODE = {"CPU": 0, HEAD: 1, "memory": 8e9}
GPU_1X = {"CPU": 4, "GPU": 1}


def _resources(**values) -> ResourcesConfig:
    """A resources section: the study format's defaults and `values` (not checked against
    a study's batch size, as parsing would)."""
    defaults = {key: default for key, (_, default) in RESOURCES_SCHEMA.items()}
    return ResourcesConfig(**{**defaults, **values})


@pytest.fixture(scope="module")
def launcher() -> Autoscaler:
    """The node types of the repository's cluster.yaml: gpu_1x (4 CPU, 1 GPU, at most 4)
    and gpu_8x (96 CPU, 8 GPU, at most 1), 5 worker nodes in all."""
    return autoscaler_from_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))


# --- node types and planning (pure) ---

def test_node_types_come_from_the_launcher_config(launcher):
    assert launcher == Autoscaler((NodeType("gpu_1x", {"CPU": 4, "GPU": 1}, 4),
                                   NodeType("gpu_8x", {"CPU": 96, "GPU": 8}, 1)), 5)
    # Ray's defaults: a type without max_workers may use the cluster's; the head starts none.
    config = {"max_workers": 6, "head_node_type": "head",
              "available_node_types": {"head": {"resources": {"CPU": 8}},
                                       "cpu": {"resources": {"CPU": 16}}}}
    assert autoscaler_from_config(config) == Autoscaler((NodeType("cpu", {"CPU": 16}, 6),), 6)


def test_a_ddp_trial_larger_than_the_nodes_up_waits_for_a_node_type(launcher):
    """On the head and one gpu_1x node, an 8-GPU DDP trial fits only the gpu_8x type
    (scaled from zero): refused from the snapshot, planned with the autoscaler."""
    nodes = [HEAD_NODE, GPU_1X]
    total = {"CPU": 4, "GPU": 1}
    with pytest.raises(ResourceError, match="but the cluster has 4 CPUs"):
        plan_resources(_resources(workers_per_trial=8), total, nodes)
    plan = plan_resources(_resources(workers_per_trial=8), total, nodes, autoscaler=launcher)
    assert (plan.resources.workers, plan.resources.gpus_per_worker) == (8, 1.0)
    assert plan.max_concurrent == 1   # 4 one-GPU nodes + one 8-GPU node: 12 workers


def test_trials_at_once_count_the_nodes_the_autoscaler_may_add(launcher):
    """The 138-trial ablation study on the head and one gpu_1x node: a quarter GPU per
    trial packs 4 per gpu_1x node (4 CPUs) and 32 on the gpu_8x node: 48 at once, not
    the 4 that fit on the node that is up; max_concurrent still caps it."""
    nodes, total = [HEAD_NODE, GPU_1X], {"CPU": 4, "GPU": 1}
    quarter = _resources(gpus_per_worker=0.25)
    assert plan_resources(quarter, total, nodes).max_concurrent == 4
    assert plan_resources(quarter, total, nodes, autoscaler=launcher).max_concurrent == 48
    capped = _resources(gpus_per_worker=0.25, max_concurrent=10)
    assert plan_resources(capped, total, nodes, autoscaler=launcher).max_concurrent == 10


def test_gpu_packing_is_planned_before_any_gpu_node_is_up(launcher):
    """With only the CPU head up, `gpus_per_worker: auto` still packs small models by
    their FLOPs (resnet_20: a quarter GPU, resnet18: a whole one)."""
    small, big = spec("resnet_20"), spec("resnet18")
    shares, concurrent = plan_trials(_resources(), [small, big], {"CPU": 0}, [HEAD_NODE],
                                     launcher)
    assert (shares[small.key].gpus_per_worker, shares[big.key].gpus_per_worker) == (0.25, 1.0)
    assert concurrent == 48


def test_a_worker_no_node_type_holds_is_refused_naming_the_largest_type(launcher):
    with pytest.raises(ResourceError, match=r"needs 128 CPU and 1 GPU on one node, but no node "
                       r"type of the cluster has that \(the largest node type, gpu_8x, has "
                       r"96 CPU and 8 GPU\); allowed: "):
        plan_resources(_resources(cpus_per_worker=128), {"CPU": 4, "GPU": 1},
                       [HEAD_NODE, GPU_1X], autoscaler=launcher)
    with pytest.raises(ResourceError, match=r"16 workers per trial, but the cluster's nodes \(every "
                       r"node type at its max_workers\) hold only 12 workers of 1 CPU and 1 GPU "
                       r"each \(the largest node type, gpu_8x, .*\); allowed: <= 12"):
        plan_resources(_resources(workers_per_trial=16), {"CPU": 4, "GPU": 1},
                       [HEAD_NODE, GPU_1X], autoscaler=launcher)


def test_the_clusters_max_workers_caps_the_growth():
    """Two worker nodes in all: the 8-GPU type first (8 workers), then one 1-GPU node."""
    types = (NodeType("gpu_1x", GPU_1X, 4), NodeType("gpu_8x", {"CPU": 96, "GPU": 8}, 1))
    two = Autoscaler(types, max_workers=2)
    with pytest.raises(ResourceError, match="hold only 9 workers"):
        plan_resources(_resources(workers_per_trial=10), {"CPU": 0}, [HEAD_NODE], autoscaler=two)
    # Nodes that are up but belong to no node type (joined by hand) still count.
    joined = [HEAD_NODE] + [GPU_1X] * 10
    plan = plan_resources(_resources(workers_per_trial=10), {"CPU": 40, "GPU": 10}, joined,
                          autoscaler=two)
    assert plan.max_concurrent == 1


def test_every_trial_of_a_study_may_wait_for_a_node(monkeypatch):
    """Tune's own limit on trials waiting for resources becomes the study's size."""
    from ray.tune.execution.tune_controller import _get_max_pending_trials
    from ray.tune.search import BasicVariantGenerator

    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "auto")   # restored afterwards
    allow_pending_trials(1380)
    assert _get_max_pending_trials(BasicVariantGenerator()) == 1380


def test_the_config_is_found_through_the_autoscalers_process(tmp_path):
    """The monitor process of the cluster's GCS names the config (a relative path is
    the monitor's own); other clusters' monitors on the machine are not it."""
    script = tmp_path / "ray" / "autoscaler" / "_private" / "monitor.py"
    script.parent.mkdir(parents=True)
    script.write_text("import time; time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-u", str(script), "--gcs-address=127.0.0.1:7",
                             "--autoscaling-config=bootstrap.yaml"], cwd=tmp_path)
    try:
        found = wait_for(lambda: _autoscaling_config("127.0.0.1:7"), "the monitor process")
        assert found == tmp_path / "bootstrap.yaml"
        assert _autoscaling_config("127.0.0.1:8") is None
    finally:
        proc.kill()
        proc.wait()


# --- a real autoscaling cluster ---

@pytest.fixture(scope="module")
def autoscaling(tmp_path_factory):
    cluster = FakeAutoscalingCluster(
        tmp_path_factory.mktemp("autoscaling"), head_cpus=0, max_workers=2,
        worker_types={"cpu1x": {"resources": {"CPU": 1, "object_store_memory": 150 * 2**20},
                                "node_config": {}, "min_workers": 0, "max_workers": 2}})
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _raysweep_run(cluster: FakeAutoscalingCluster, study: Path, storage: Path,
                  **popen) -> subprocess.Popen:
    """`raysweep run` on the head, as `ray exec cluster.yaml 'raysweep run ...'` runs it."""
    return subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", str(study),
                             "--address", cluster.address, "--storage", str(storage)],
                            env=cluster.env, cwd=ROOT, text=True, start_new_session=True,
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen})


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    """The process's output once it has exited; killed (its whole session) on a timeout."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _records(run_dir: Path) -> dict[str, dict]:
    """A run's records by key, in their stored (JSON) form."""
    return {r.key: r.to_dict() for r in records.read_records(run_dir)}


def _checkpointed(run_dir: Path) -> list[str]:
    """Keys of the trials with a checkpoint in the run folder: raysweep's own
    (`checkpoints/<key>/`), or Ray Train's (`train/<label>.<key>/checkpoint_*`) where the
    driver leaves checkpoints to Train. (A record can trail its trial: it is written
    when Tune has the epoch's result.)"""
    own = [p.parent.name for p in run_dir.glob("checkpoints/*/*")]
    train = [p.parent.name.rsplit(".", 1)[-1] for p in run_dir.glob("train/*/checkpoint_*")]
    return own + train


def _train_run(cluster: FakeAutoscalingCluster, key: str) -> dict | None:
    """The trial's Ray Train run (named `<label>.<key>`), as Train's State API
    (/api/train/v2/runs/v1) has it: its attempts (one per launch of its worker group)
    and their workers."""
    return next((r for r in cluster.train_runs() if r["name"].endswith(f".{key}")), None)


def _training_nodes(cluster: FakeAutoscalingCluster) -> dict[str, str]:
    """The node each trial's (one) Train worker runs on now, by trial key."""
    return {r["name"].rsplit(".", 1)[-1]: r["attempts"][-1]["workers"][0]["node_id"]
            for r in cluster.train_runs() if r["attempts"] and r["attempts"][-1]["workers"]}


@pytest.mark.slow
def test_a_trial_shape_no_node_type_holds_is_refused_before_any_trial(autoscaling, tmp_path):
    study = write_study(tmp_path, "toobig", defaults={**TINY, "epochs": 1},
                        models=["resnet_20"], resources={"cpus_per_worker": 2})
    proc = _raysweep_run(autoscaling, study, tmp_path / "runs", stderr=subprocess.PIPE)
    stdout, stderr = _finish(proc, timeout=300)
    line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    assert "needs 2 CPU on one node" in line and "cpu1x, has 1 CPU" in line, line
    assert not list((tmp_path / "runs").glob("toobig/records/*.json"))
    assert autoscaling.node_count().workers == 0


@dataclass
class ElasticRun:
    """One study on the autoscaling cluster, during which one trial's node was killed."""
    output: str
    returncode: int
    records: dict[str, dict]       # by key
    counts: list[NodeCount]        # the autoscaler's, while the study ran
    lost_key: str                  # the trial whose node was killed
    lost_node: str                 # that node's id
    train_runs: dict[str, dict]    # by key: the trial's Train run, its attempts and workers


@pytest.fixture(scope="module")
def elastic_run(autoscaling, tmp_path_factory) -> ElasticRun:
    """Two 1-CPU trials of 3 epochs on the head without CPUs and no worker node. When
    the first trial has its first checkpoint, the raylet of the node training it is
    killed (SIGKILL). The two trials are the seeds of one arm under seed-aware ASHA
    (its rung at epoch 2 waits for both), so the arm scheduler runs on a cluster that
    grows and loses a node."""
    assert autoscaling.node_count().workers == 0
    folder = tmp_path_factory.mktemp("elastic")
    study = write_study(folder, "grow", defaults={**TINY, "epochs": 3},
                        models=["resnet_20"], seeds=2,
                        asha={"by": "arm", "grace_period": 2, "reduction_factor": 2})
    run_dir = folder / "runs" / "grow"
    watch = autoscaling.watch(interval=1.0)
    proc = _raysweep_run(autoscaling, study, folder / "runs")
    nodes: dict[str, str] = {}   # trial key -> the node training it, known before it checkpoints

    def first_checkpointed() -> tuple[str, str] | None:
        if len(nodes) < 2:
            nodes.update(_training_nodes(autoscaling))
        return next(((k, nodes[k]) for k in _checkpointed(run_dir) if k in nodes), None)

    try:
        key, node = wait_for(first_checkpointed, "a first checkpoint", timeout=600, proc=proc)
        os.kill(autoscaling.raylet_pid(node), signal.SIGKILL)
        killed_at = watch.seconds()
    finally:
        output, _ = _finish(proc)
        ended_at = watch.seconds()
        counts = watch.stop()
    print(f"\nnode killed at {killed_at:.1f} s, study ended at {ended_at:.1f} s; "
          "the autoscaler's node counts (s since the study began: cpu1x nodes up, launching):")
    for count in counts:
        print(f"  {count.seconds:6.1f} s  up {count.workers}  launching {count.launching}")
    found = _records(run_dir)
    return ElasticRun(output, proc.returncode, found, counts, key, node,
                      {k: _train_run(autoscaling, k) for k in found})


@pytest.mark.slow
def test_a_study_grows_the_cluster_from_no_worker_node(elastic_run):
    """The autoscaler adds cpu1x nodes for the trials' demand, every trial completes,
    and more than one node trains them."""
    assert elastic_run.returncode == 0, elastic_run.output[-3000:]
    assert [r["status"] for r in elastic_run.records.values()] == ["completed"] * 2
    counts = elastic_run.counts
    assert counts[0].workers == 0 and max(c.workers for c in counts) > 1, counts
    # where each trial first trained (the node loss aside): nodes as they arrived
    first_nodes = {w["node_id"] for run in elastic_run.train_runs.values()
                   for w in next(a for a in run["attempts"] if a["workers"])["workers"]}
    assert len(first_nodes) > 1, first_nodes


@pytest.mark.slow
def test_a_trial_whose_node_dies_finishes_on_another_node(elastic_run):
    """Train restarts the lost trial's worker on another node, from the checkpoint in
    the run folder: its history has every epoch once and its record counts the restart."""
    assert elastic_run.returncode == 0, elastic_run.output[-3000:]
    record = elastic_run.records[elastic_run.lost_key]
    assert record["status"] == "completed", record.get("error")
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["restarts"] >= 1
    assert len(record["segments"]) >= 2   # one segment per launch
    attempts = elastic_run.train_runs[elastic_run.lost_key]["attempts"]
    assert len(attempts) >= 2
    finished_on = {w["node_id"] for w in attempts[-1]["workers"]}
    assert finished_on and elastic_run.lost_node not in finished_on
