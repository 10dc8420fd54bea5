"""Resource planning: what each trial runs on and how many run at once. Pure functions of
the study and the cluster's nodes (no Ray), so every rule is testable without a cluster.

A trial's Tune function and Train's controller take no CPU (the driver module gives them
a token of memory), so a trial holds exactly its workers' resources and trials never
wait on each other's drivers (with Ray's 1-CPU default driver, two trials on 2 CPUs
deadlock).

On a cluster with an autoscaler (`Autoscaler`: its worker node types), a study is
planned against the largest cluster the autoscaler may build, not the nodes up when it
starts: trials that do not fit now wait as pending placement groups, and that demand is
what makes the autoscaler add nodes.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

from raysweep.errors import ResourceError
from raysweep.core.trial import TrialResources, TrialSpec

Node = dict[str, float]   # one node's total resources, as Ray reports them ("CPU", "GPU", ...)
HEAD = "node:__internal_head__"   # the resource Ray gives the head node, and no other
# When seeds (and lr / weight-decay variants) of one arm train as one fused array
# (`raysweep.engine.arrays`): auto on GPU trials only (on the CPU a fused step is slower: 0.71×),
# on also on CPU trials, off never (the default, until the GPU path is measured).
FUSE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class ResourcesConfig:
    """A study's `resources:` section (defaults and checks: `study.parse.RESOURCES_SCHEMA`):
    what one trial holds and how many run at once."""
    workers_per_trial: int            # Train workers (DDP ranks) of one trial
    cpus_per_worker: float
    gpus_per_worker: float | str      # a share of one GPU, or "auto" (by model size)
    max_concurrent: int | str         # trials at once at most, or "auto" (what fits)
    max_failures: int                 # worker-group restarts of one trial
    fuse: str                         # fused arrays: FUSE_MODES
    fuse_members: int                 # trials of one fused array at most


@dataclass(frozen=True)
class NodeType:
    """A kind of worker node the autoscaler starts on demand (`available_node_types`)."""
    name: str
    resources: Node           # what one node of this type offers
    max_workers: int          # nodes of this type at most


@dataclass(frozen=True)
class Autoscaler:
    """What a cluster can grow into: its worker node types and the cap on all of them."""
    node_types: tuple[NodeType, ...]
    max_workers: int | None   # worker nodes of every type together; None: no cap of its own

    def workers_at_most(self, cpw: float, gpw: float) -> int:
        """Workers of one shape that the worker nodes hold when grown to their limits.
        Every node counts once against `max_workers`, so taking the types that hold the
        most such workers per node first gives the largest count."""
        per_type = sorted(((workers_on(t.resources, cpw, gpw), t.max_workers)
                           for t in self.node_types), reverse=True)
        room = self.max_workers if self.max_workers is not None else sum(n for _, n in per_type)
        held = 0
        for per_node, count in per_type:
            count = min(count, room)
            held, room = held + per_node * count, room - count
        return held

    def largest(self) -> NodeType:
        """The type with the most GPUs (then CPUs), among those it may start."""
        startable = [t for t in self.node_types if t.max_workers > 0] or self.node_types
        return max(startable, key=lambda t: (t.resources.get("GPU", 0), t.resources.get("CPU", 0)))

    @property
    def has_gpus(self) -> bool:
        return any(t.resources.get("GPU", 0) > 0 and t.max_workers > 0 for t in self.node_types)


@dataclass(frozen=True)
class Plan:
    resources: TrialResources
    max_concurrent: int       # trials of this shape that fit at once (on the grown cluster)


def has_gpus(cluster: Node, autoscaler: Autoscaler | None = None) -> bool:
    """Whether the cluster has GPUs now or its autoscaler can add some."""
    return cluster.get("GPU", 0) > 0 or bool(autoscaler and autoscaler.has_gpus)


def workers_held(nodes: list[Node], cpw: float, gpw: float,
                 autoscaler: Autoscaler | None = None) -> int:
    """Workers of one shape the cluster holds at its largest: the alive nodes, or with an
    autoscaler the head plus every worker node type up to its limit (alive worker nodes
    are some of those), whichever holds more."""
    now = sum(workers_on(node, cpw, gpw) for node in nodes)
    if autoscaler is None:
        return now
    head = sum(workers_on(node, cpw, gpw) for node in nodes if HEAD in node)
    return max(now, head + autoscaler.workers_at_most(cpw, gpw))


def plan_resources(resources: ResourcesConfig, cluster: Node, nodes: list[Node] | None = None,
                   gpu_share: float | None = None,
                   autoscaler: Autoscaler | None = None) -> Plan:
    """Size one trial's workers from a study's `resources` section and check that the
    cluster holds them.

    `nodes` (each alive node's total resources; default: the cluster as one node) decide
    what fits: a worker lives on one node, so the cluster's CPUs summed over nodes can
    hold fewer workers than its total suggests. A trial whose workers do not fit on one
    node spreads them across nodes (Train's default PACK placement).

    `autoscaler` (the cluster's worker node types; None: the nodes are all there is)
    lets a trial need nodes that are not up yet: it is refused only when no node type
    can hold its workers, and trials at once count the nodes the autoscaler may add.

    `gpu_share` replaces `gpus_per_worker: auto` (one whole GPU, or none on a CPU
    cluster) with the share `plan_trials` picked from a model's size."""
    if resources.gpus_per_worker != "auto":
        gpw = float(resources.gpus_per_worker)
    else:
        gpw = (gpu_share or 1.0) if has_gpus(cluster, autoscaler) else 0.0
    cpw, workers = float(resources.cpus_per_worker), resources.workers_per_trial
    if autoscaler is None:
        _check_totals(cluster, workers, cpw, gpw)
    nodes = nodes or [cluster]
    held = workers_held(nodes, cpw, gpw, autoscaler)
    if held == 0:
        raise ResourceError(_no_node_holds(nodes, cpw, gpw, autoscaler))
    if held < workers:
        grown = " (every node type at its max_workers)" if autoscaler else ""
        raise ResourceError(f"resources: {workers} workers per trial, but the cluster's nodes"
                            f"{grown} hold only {held} workers of {shape(cpw, gpw)} each"
                            f"{_largest_type(autoscaler, gpw)}; allowed: <= {held}")
    fit = held // workers
    limit = resources.max_concurrent
    return Plan(TrialResources(workers, cpw, gpw), fit if limit == "auto" else min(fit, limit))


def _check_totals(cluster: Node, workers: int, cpw: float, gpw: float) -> None:
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    if workers * cpw > cpus:
        raise ResourceError(f"resources: {workers} workers × {cpw:g} CPU = {workers * cpw:g} CPUs "
                            f"per trial, but the cluster has {cpus:g} CPUs; allowed: "
                            f"workers_per_trial × cpus_per_worker <= {cpus:g}")
    if workers * gpw > gpus:
        raise ResourceError(f"resources: {workers} workers × {gpw:g} GPU = {workers * gpw:g} GPUs "
                            f"per trial, but the cluster has {gpus:g} GPUs; allowed: <= {gpus:g} "
                            f"(or gpus_per_worker: 0 for CPU training)")


def _no_node_holds(nodes: list[Node], cpw: float, gpw: float,
                   autoscaler: Autoscaler | None) -> str:
    allowed = "allowed: cpus_per_worker and gpus_per_worker that one node holds"
    if autoscaler is not None and autoscaler.node_types:
        return (f"resources: a worker needs {shape(cpw, gpw)} on one node, but no node type of "
                f"the cluster has that{_largest_type(autoscaler, gpw)}; {allowed}")
    big = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
    return (f"resources: a worker needs {shape(cpw, gpw)} on one node, but the largest node "
            f"has {shape(big.get('CPU', 0), big.get('GPU', 0), gpw)}; {allowed}")


def _largest_type(autoscaler: Autoscaler | None, gpw: float) -> str:
    if autoscaler is None or not autoscaler.node_types:
        return ""
    big = autoscaler.largest()
    return (f" (the largest node type, {big.name}, has "
            f"{shape(big.resources.get('CPU', 0), big.resources.get('GPU', 0), gpw)})")


# Forward FLOPs per 32×32 image under which one trial leaves most of a modern GPU idle
# (its step is bound by kernel launches, not arithmetic): `gpus_per_worker: auto` then
# packs such trials several to a GPU: resnet_20/32 (0.08/0.14 GFLOPs) get a quarter,
# resnet_56 and convnext_tiny (0.25/0.18) a half, resnet18 and coatnet_cifar_opt (1.1) a
# whole GPU (`raysweep list models` prints each model's FLOPs). benchmarks/README.md has
# the packing measurement behind the quarter.
AUTO_GPU_SHARES = ((0.15e9, 0.25), (0.6e9, 0.5))


def auto_gpu_share(flops: int) -> float:
    return next((share for limit, share in AUTO_GPU_SHARES if flops < limit), 1.0)


@functools.lru_cache(maxsize=None)
def _model_flops(model: str, options_json: str) -> int:
    from models import model_facts

    return model_facts(model, **json.loads(options_json)).flops


def plan_trials(resources: ResourcesConfig, specs: list[TrialSpec], cluster: Node,
                nodes: list[Node] | None = None, autoscaler: Autoscaler | None = None
                ) -> tuple[dict[str, TrialResources], int]:
    """Each trial's resources (by key) and how many trials may run at once. With
    `gpus_per_worker: auto` on a GPU cluster (GPUs up, or node types that have them), a
    one-worker trial of a small model gets a fraction of a GPU (`auto_gpu_share`); DDP
    trials keep whole GPUs (two ranks of one trial on one GPU would only contend)."""
    auto = (resources.gpus_per_worker == "auto" and has_gpus(cluster, autoscaler)
            and resources.workers_per_trial == 1)
    plans: dict[float | None, Plan] = {}
    out = {}
    for spec in specs:
        share = auto_gpu_share(_model_flops(spec.model, json.dumps(
            spec.model_options, sort_keys=True))) if auto else None
        if share not in plans:
            plans[share] = plan_resources(resources, cluster, nodes, share, autoscaler)
        out[spec.key] = plans[share].resources
    return out, max((p.max_concurrent for p in plans.values()), default=1)


def workers_on(node: Node, cpw: float, gpw: float) -> int:
    fit = node.get("CPU", 0) / cpw
    if gpw:
        fit = min(fit, node.get("GPU", 0) / gpw)
    return math.floor(fit + 1e-9)


def shape(cpus: float, gpus: float, show_gpus: float | None = None) -> str:
    show = gpus if show_gpus is None else show_gpus
    return f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if show else "")


def check_divides(batch_size: int, workers: int, where: str = "defaults.batch_size") -> int:
    """Images per worker per step; a global batch that the workers cannot split evenly
    is refused (DDP averages equal shares)."""
    if batch_size % workers:
        raise ResourceError(f"{where}={batch_size} is not divisible by workers_per_trial="
                            f"{workers}: each worker takes batch_size / workers images per "
                            f"step; allowed: a worker count that divides {batch_size}")
    return batch_size // workers
