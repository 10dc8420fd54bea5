"""Fused arrays in the engine: the Ray actor that trains one array (`ArrayActor`). Which
trials train together, each member's Tune function and the driver callback that starts
arrays and tells them who left (`ArrayKeeper`) are `raysweep.engine.members` (no torch:
a member's process only relays its array's epochs, and the driver trains nothing); the
training itself is `raysweep.training.fusion`.

Every member stays a Tune trial of its own: ASHA judges it, the record writer keeps its
record, progress and TensorBoard show it. Its Tune function holds next to no resources
(a token, as a Train trial's function does) and fetches its epochs from the array's actor,
which holds one trial's CPUs and GPU share:

    Tune trial (member) ── next(key) ──▶ ArrayActor ── FusedTrainer.epoch ──▶ checkpoints
    driver: ASHA stops a member ── ArrayKeeper.on_trial_complete ── leave(key) ──▶ actor

The actor trains epoch e+1 only once every member has been decided on at epoch e (its
function asked for the next epoch: Tune let it go on; or it left: stopped, diverged,
errored), so a stopped member costs no further compute. Members receive an epoch in
study order, each after Tune has decided on the one before it, so ASHA's decisions within
an array do not depend on thread timing.
"""
from __future__ import annotations

import os
import threading
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING

import ray

from raysweep.store.storage import location
from raysweep.core.report import Report, encode, first_report
from raysweep.core.trial import EpochResult, Launch, Segment, TrialResources, TrialSpec

if TYPE_CHECKING:
    from raysweep.training.fusion import Member

# The training modules (torch) are imported in the methods that train, not here: a
# member's Tune process loads this class to call the actor (`ray.get_actor`) and needs
# only its methods' names, so it starts without torch (~4 CPU-s per member).

@ray.remote(max_restarts=0)
class ArrayActor:
    """Trains one array in a thread; its members' Tune functions call `next`, the driver
    calls `leave`. Members whose checkpoints stand at different epochs (a resumed run)
    train as successive arrays, one per starting epoch."""

    def __init__(self, specs: list[TrialSpec], launch: Launch):
        self.order = [s.key for s in specs]
        self.cond = threading.Condition()
        self.results: dict[str, dict[int, dict]] = {k: {} for k in self.order}
        self.delivered: dict[str, int] = {}    # last epoch handed to the member
        self.resolved: dict[str, int] = {}     # last epoch the member asked past
        self.final: dict[str, int] = {}        # last epoch the member will have
        self.start_epoch: dict[str, int] = {}       # the epoch its array starts from
        self.left: set[str] = set()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, args=(specs, launch), daemon=True)
        self.thread.start()

    # --- called by members and the driver ---

    def next(self, key: str) -> dict | None:
        """The member's next epoch (metrics for `ray.tune.report`), or None when it has
        no more; asking means the member was let go on past the epoch it last had."""
        with self.cond:
            if key in self.delivered:
                self.resolved[key] = self.delivered[key]
                self.cond.notify_all()
            while True:
                if self.error:
                    raise RuntimeError(self.error)
                if key in self.final:
                    epoch = self.delivered.get(key, self.start_epoch[key] - 1) + 1
                    if epoch > self.final[key]:
                        return None
                    if epoch in self.results[key] and self._turn(key, epoch):
                        self.delivered[key] = epoch
                        return self.results[key][epoch]
                self.cond.wait()

    def leave(self, key: str) -> None:
        with self.cond:
            self.left.add(key)
            self.cond.notify_all()

    def _turn(self, key: str, epoch: int) -> bool:
        """Every member before `key` that has this epoch has been decided on."""
        for other in self.order[:self.order.index(key)]:
            if (other not in self.left and epoch in self.results[other]
                    and self.resolved.get(other, 0) < epoch):
                return False
        return True

    # --- the training thread ---

    def _run(self, specs: list[TrialSpec], launch: Launch) -> None:
        try:
            import torch

            from raysweep.training import data
            from raysweep.training.worker import last_epoch

            device = torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cpu")
            torch.set_num_threads(max(1, int(launch.resources.cpus_per_worker)))
            t = specs[0].train
            splits = data.prepare(t, device)
            steps = data.steps_per_epoch(len(splits.train), t.batch_size)
            members = [self._load(s, launch, splits.classes, steps) for s in specs]
            by_start: dict[int, list[Member]] = {}
            for m in members:
                by_start.setdefault(last_epoch(m.history) + 1, []).append(m)
            for start in sorted(by_start):
                self._train(by_start[start], start, launch, splits, steps, device)
        except Exception:  # noqa: BLE001 - every member's trial errors with the text
            with self.cond:
                self.error = traceback.format_exc(limit=-3)
                self.cond.notify_all()

    def _load(self, spec: TrialSpec, launch: Launch, classes: int, steps: int) -> Member:
        from raysweep.store import checkpoints
        from raysweep.training.fusion import Member, new_shadow

        shadow = new_shadow(spec, classes, steps)
        state, skipped = checkpoints.latest(location(launch.run_dir), spec.key)
        member = Member(spec, shadow, [], [], skipped)
        if state:
            shadow.restore(state)
            member.history, member.segments = checkpoints.trial_progress(state)
        return member

    def _train(self, members: list[Member], start: int, launch: Launch, splits, steps,
               device) -> None:
        from models import model_facts
        from raysweep.store import checkpoints
        from raysweep.training.fusion import FusedTrainer

        epochs = members[0].spec.train.epochs
        facts = model_facts(members[0].spec.model, splits.classes,
                            **members[0].spec.model_options)
        if start > epochs:   # finished before a driver died unrecorded: report the last again
            self._publish(members, [m.history[-1] for m in members], facts, start - 1)
            return
        for m in members:
            m.segments.append(self._segment(m, launch, device, len(members)))
        trainer = FusedTrainer(members, splits, steps, device, members[0].spec.train.compile)
        with self.cond:
            self.final.update({m.key: epochs for m in members})
            self.start_epoch.update({m.key: start for m in members})
            self.cond.notify_all()
        for epoch in range(start, epochs + 1):
            with self.cond:
                while not all(m.key in self.left or self.resolved.get(m.key, 0) >= epoch - 1
                              for m in trainer.members) and epoch > start:
                    self.cond.wait()
                gone = {m.key for m in trainer.members
                        if m.key in self.left or (m.history and m.history[-1].train_loss is None)}
            trainer.drop(gone)
            if not trainer.members:
                return
            results = trainer.epoch(epoch)
            for m, result in zip(trainer.members, results):
                m.history.append(result)
                checkpoints.save(location(launch.run_dir), m.key, epoch,
                                 checkpoints.trial_state(m.shadow.state(), m.history, m.segments))
                if result.train_loss is None:
                    self.final[m.key] = epoch
            self._publish(trainer.members, results, facts, start)

    def _publish(self, members: list[Member], results: list[EpochResult], facts,
                 start: int) -> None:
        with self.cond:
            for m, result in zip(members, results):
                report = Report(result)
                if result.epoch == start or result.epoch == m.segments[-1].first_epoch:
                    report = first_report(result, m.segments, m.history, facts.params,
                                          facts.flops)
                self.results[m.key][result.epoch] = encode(report)
                self.final.setdefault(m.key, result.epoch)
                self.start_epoch.setdefault(m.key, result.epoch)
            self.cond.notify_all()

    def _segment(self, m: Member, launch: Launch, device, k: int) -> Segment:
        from raysweep.training.worker import new_segment

        res = launch.resources
        share = replace(launch, resources=TrialResources(
            1, res.cpus_per_worker / k, res.gpus_per_worker / k))
        seg = new_segment(share, 1, device, m.history, m.shadow,
                          bool(m.history), m.skipped, m.spec.train.amp)
        return replace(seg, fused_members=k, worker_pid=os.getpid())

