"""A fused array's members as Tune sees them: which trials of a study train together
(`plan_arrays`), the order Tune gets them in (`grid_order`) and each member's Tune function
(`run_member`), which fetches its epochs from the array's actor (`raysweep.engine.arrays`).

The driver's side of arrays is here too (`ArrayKeeper`: starts an array's actor, tells it
who left). Nothing here imports torch at import time: a member's Tune process unpickles
its `ArrayPlan` and only relays epochs, so it starts without torch (~2.3 s of CPU less
per member), and neither does the driver of a study without arrays (~3 s of CPU less per
`raysweep run`; planning imports the fusion rules when `fuse` may apply).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import ray
import ray.tune

from raysweep.core.trial import Launch, TrialResources, TrialSpec


@dataclass(frozen=True)
class ArrayPlan:
    """One fused array of a run: its actor's name, its members, what it holds."""
    name: str
    members: tuple[str, ...]    # trial keys, in study order (the order results go out)
    resources: TrialResources   # one trial's: the array runs where one trial would


def plan_arrays(specs: list[TrialSpec], resources: dict[str, TrialResources], fuse: str,
                max_members: int, run_dir: str, by_arm: bool = False) -> dict[str, ArrayPlan]:
    """The arrays of these trials, by member key: trials with equal `fusion.array_key`
    that can be fused, up to `max_members` an array; a trial alone stays a trial.
    `by_arm` (seed-aware ASHA): an array holds the seeds of one arm only, which train in
    step and so reach each rung together; an arm with more seeds than `max_members` is
    not fused (its seeds run as trials, which can wait at a rung)."""
    groups: dict[object, list[TrialSpec]] = {}
    for spec in specs:
        res = resources[spec.key]
        if fuse == "off" or (fuse == "auto" and not res.use_gpu) or spec.sampled_from:
            continue
        # The fusion rules import torch: only for a study some of whose trials may fuse.
        from raysweep.datasets import readers as datasets
        from raysweep.training.fusion import array_key, why_not_fused

        if why_not_fused(spec, res.workers, datasets.num_classes(spec.train)) is None:
            group = (array_key(spec), spec.arm_key) if by_arm else array_key(spec)
            groups.setdefault(group, []).append(spec)
    run = hashlib.sha1(run_dir.encode()).hexdigest()[:8]
    plans = {}
    for members in groups.values():
        if by_arm and len(members) > max_members:
            continue   # split into arrays, one would train past a rung the other is not at
        for first in range(0, len(members), max_members):
            chunk = tuple(s.key for s in members[first:first + max_members])
            if len(chunk) > 1:
                plan = ArrayPlan(f"raysweep-array-{run}-{chunk[0]}", chunk,
                                 resources[chunk[0]])
                plans.update({key: plan for key in chunk})
    return plans


def grid_order(specs: list[TrialSpec], arrays: dict[str, ArrayPlan]) -> list[TrialSpec]:
    """The trials with each array's members next to each other, so Tune starts an
    array's members together."""
    by_key = {s.key: s for s in specs}
    out, seen = [], set()
    for spec in specs:
        keys = arrays[spec.key].members if spec.key in arrays else (spec.key,)
        out += [by_key[k] for k in keys if k not in seen]
        seen.update(keys)
    return out


def run_member(plan: ArrayPlan, key: str) -> None:
    """A member's Tune function: report the epochs its array trains for it."""
    actor = _actor(plan.name)
    while (metrics := ray.get(actor.next.remote(key))) is not None:
        ray.tune.report(metrics)


def _actor(name: str, wait_s: float = 300.0):
    # The driver creates the actor when Tune starts the array's first member, before
    # that member's function runs; the wait covers a slow GCS.
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get_actor(name)
        except ValueError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fused array {name} was never started") from None
            time.sleep(0.1)


class ArrayKeeper(ray.tune.Callback):
    """On the driver: starts an array's actor with its first member, tells it when a
    member leaves (ASHA stop, divergence, error), and ends it with its last member."""

    def __init__(self, plans: dict[str, ArrayPlan], specs: dict[str, TrialSpec], run_dir: str):
        self.plans, self.specs, self.run_dir = plans, specs, run_dir
        self.actors: dict[str, ray.actor.ActorHandle] = {}
        self.remaining: dict[str, set[str]] = {}

    def __getstate__(self):
        return {**self.__dict__, "actors": {}}   # Tune pickles its callbacks

    def on_trial_start(self, iteration, trials, trial, **info):
        plan = self.plans.get(trial.config.get("trial"))
        if plan is None or plan.name in self.actors:
            return
        from raysweep.engine.arrays import ArrayActor   # torch: only once an array starts

        res = plan.resources
        self.actors[plan.name] = ArrayActor.options(
            name=plan.name, num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker,
            max_concurrency=len(plan.members) + 4).remote(
                [self.specs[k] for k in plan.members],
                Launch(self.run_dir, "fused", res, time.time()))
        self.remaining[plan.name] = set(plan.members)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._leave(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._leave(trial)

    def _leave(self, trial) -> None:
        key = trial.config.get("trial")
        plan = self.plans.get(key)
        if plan is None or plan.name not in self.actors:
            return
        self.actors[plan.name].leave.remote(key)
        self.remaining[plan.name].discard(key)
        if not self.remaining[plan.name]:
            ray.kill(self.actors.pop(plan.name))

    def close(self) -> None:
        """End every array still running (the study ended or was interrupted: each
        member resumes from its own last checkpoint)."""
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
