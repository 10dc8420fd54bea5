"""A fused array's members as Tune sees them: which trials of a study train together
(`plan_arrays`), the order Tune gets them in (`grid_order`) and each member's Tune function
(`run_member`), which fetches its epochs from the array's actor (`raysweep.engine.arrays`).

Nothing here imports torch at import time: a member's Tune process unpickles its
`ArrayPlan` and only relays epochs, so it starts without torch (~2.3 s of CPU less per
member; only the driver, planning, imports the fusion rules).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import ray
import ray.tune

from raysweep.core.trial import TrialResources, TrialSpec


@dataclass(frozen=True)
class ArrayPlan:
    """One fused array of a run: its actor's name, its members, what it holds."""
    name: str
    members: tuple[str, ...]    # trial keys, in study order (the order results go out)
    resources: TrialResources   # one trial's: the array runs where one trial would


def plan_arrays(specs: list[TrialSpec], resources: dict[str, TrialResources], fuse: str,
                max_members: int, run_dir: str) -> dict[str, ArrayPlan]:
    """The arrays of these trials, by member key: trials with equal `fusion.array_key`
    that can be fused, up to `max_members` an array; a trial alone stays a trial."""
    from raysweep.datasets import readers as datasets
    from raysweep.training.fusion import array_key, why_not_fused

    groups: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        res = resources[spec.key]
        if fuse == "off" or (fuse == "auto" and not res.use_gpu) or spec.sampled_from:
            continue
        if why_not_fused(spec, res.workers, datasets.num_classes(spec.train)) is None:
            groups.setdefault(array_key(spec), []).append(spec)
    run = hashlib.sha1(run_dir.encode()).hexdigest()[:8]
    plans = {}
    for members in groups.values():
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
