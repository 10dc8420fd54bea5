"""The Tune function of one trial: build and fit its Ray Train `TorchTrainer`, or
(inline, `--local` one-worker trials) run the train loop right in this process.

Tune's config of a trial holds only what Tune sweeps: `{"trial": <key>}` for a grid,
plus `{"search": {...sampled values}}` for a search. Everything else reaches the function
through `tune.with_parameters` (a `TrialContext`, put in Ray's object store once).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.train
import ray.tune

from raysweep.core.planning import HEAD
from raysweep.core.trial import Launch, TrialResources, TrialSpec

# A trial's Tune function only waits on its Train run: it holds no CPU (Tune needs a
# non-empty bundle, so it holds a token 1 MiB of logical memory instead), and a token of
# the head's own resource, so it runs on the head (Train puts the trial's controller
# beside it): a lost worker node then takes only Train workers, which the controller
# restarts elsewhere from the last checkpoint.
DRIVER_RESOURCES = {"CPU": 0, "memory": 2**20, HEAD: 1e-4}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one Tuner shares."""
    specs: dict[str, TrialSpec]             # by key: the grid's specs (a search's unsampled base)
    resources: dict[str, TrialResources]    # by key
    run_dir: str                            # path or URI
    inline: bool                            # one-worker trials run in their Tune function
    max_failures: int                       # worker-group restarts per trial (Train path)
    arrays: dict[str, Any] = field(default_factory=dict)  # by member key: its ArrayPlan

    def spec(self, config: dict[str, Any]) -> TrialSpec:
        """The trial spec of a Tune config, with a search's sampled values filled in."""
        spec = self.specs[config["trial"]]
        if config.get("search"):
            spec = spec.with_searched(config["search"], sample=None)
        return spec

    def pg_factory(self, config: dict[str, Any]) -> ray.tune.PlacementGroupFactory:
        """What a trial's Tune function holds: its worker's CPUs/GPU when the loop runs
        inline, else next to nothing (the Train workers, or a fused array's actor, hold
        the rest)."""
        res = self.resources[config["trial"]]
        if self.inline and config["trial"] not in self.arrays:
            return ray.tune.PlacementGroupFactory([res.per_worker()])
        return ray.tune.PlacementGroupFactory([DRIVER_RESOURCES])


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    # Imported here, not above: a fused array's member relays epochs and never needs torch.
    if config["trial"] in context.arrays:
        from raysweep.engine.members import run_member

        run_member(context.arrays[config["trial"]], config["trial"])
        return
    from raysweep.training.worker import train_inline, train_loop_per_worker

    spec = context.spec(config)
    if spec.sampled_from is not None and replay_finished(spec, context.run_dir):
        return
    res = context.resources[config["trial"]]
    launch = Launch(context.run_dir, "inline" if context.inline else "train-workers", res,
                    time.time())
    if context.inline:
        train_inline(spec, launch)
        return
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec, "launch": launch},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers, use_gpu=res.use_gpu, resources_per_worker=res.per_worker()),
        run_config=ray.train.RunConfig(
            # Named by the trial's identity and label (no timestamp): the name Ray's Train
            # state API lists the run and its workers under.
            name=train_run_name(spec), storage_path=f"{context.run_dir}/train",
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=context.max_failures)),
    ).fit()


def replay_finished(spec: TrialSpec, run_dir: str) -> bool:
    """A search can draw a sample it has already run (a `choice` space, a re-run): the
    stored epochs are reported again instead of training the same trial twice."""
    from raysweep.core.report import Report, encode
    from raysweep.store.storage import location
    from raysweep.store.records import read_record

    record = read_record(location(run_dir), spec.key)
    if record is None or not record.finished or not record.history:
        return False
    for entry in record.history:
        ray.tune.report(encode(Report(entry)))
    return True


def train_run_name(spec: TrialSpec) -> str:
    """`<group>.<variant>-s<seed>.<model>-<hash>`: readable, and stable across resumes."""
    return f"{safe_name(spec.label)}.{spec.key}"


def safe_name(text: str) -> str:
    """A folder-name-safe form of a label (Tune and Train rewrite other characters)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
