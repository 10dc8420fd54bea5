"""The train loop of one trial: one backbone, DDP across the trial's workers.

It runs in one of two places (a *session*): on every rank of a Ray Train worker group
(`train_loop_per_worker`), or, for a one-worker trial under `--local`, inside the trial's
Tune function itself (`train_inline`), which saves starting a Train controller and a
worker process per trial. Both run `train`, so both train the same way.

The optimisation problem does not depend on the worker count: the global batch is split
over the workers (`data.train_batches`), DDP averages their gradients, BatchNorm sees the
global batch (`sync_bn`), and the lr schedule counts global steps. Each epoch it
evaluates the validation and test splits, writes a checkpoint (rank 0,
`raysweep.store.checkpoints`) and reports the epoch; a restarted or resumed trial continues
from its newest intact checkpoint, on any worker count.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import socket
import time
from contextlib import nullcontext
from datetime import datetime, timezone

import ray
import torch
import torch.distributed as dist
import torch.nn as nn

from models import create_model, model_facts
from raysweep.store import checkpoints
from raysweep.training import data, sync_bn
from raysweep.core.planning import check_divides
from raysweep.store.storage import location
from raysweep.core.report import Report, encode, first_report
from raysweep.core.trial import EpochResult, Launch, Segment, TrainConfig, TrialSpec, finite


class TrainSession:
    """A rank of a Ray Train worker group; Train restarts the group on a worker failure."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self._report = ray.train.report


class InlineSession:
    """The trial's Tune function as its only worker; Tune retries a failed trial."""

    rank, world = 0, 1

    def __init__(self):
        import ray.tune

        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (or its fraction of one).
        self.device = torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cpu")
        self._report = ray.tune.report


def train_loop_per_worker(config: dict) -> None:
    """Entry point of every Ray Train worker."""
    train(config["spec"], config["launch"], TrainSession())


def train_inline(spec: TrialSpec, launch: Launch) -> None:
    """Entry point of a trial that runs inside its Tune function (no Train workers)."""
    train(spec, launch, InlineSession())


@dataclasses.dataclass
class Optimisation:
    """What a checkpoint saves and a resume restores."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def state(self) -> dict:
        return {"model": _unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def restore(self, state: dict) -> None:
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def train(spec: TrialSpec, launch: Launch, session) -> None:
    rank, world, device = session.rank, session.world, session.device
    t = spec.train
    torch.set_num_threads(max(1, int(launch.resources.cpus_per_worker)))
    check_divides(t.batch_size, world)
    splits = data.prepare(t, device)
    steps = data.steps_per_epoch(len(splits.train), t.batch_size)
    seed_all(spec.seed)  # same init on every rank; DDP also broadcasts rank 0's weights
    opt = build(spec, t, splits.classes, steps, device, world)
    run_dir = location(launch.run_dir)
    state, skipped = checkpoints.latest(run_dir, spec.key)
    history, segments = [], []
    if state:
        opt.restore(state)
        history, segments = checkpoints.trial_progress(state)
    segments.append(new_segment(launch, world, device, history, opt, state, skipped,
                                t.amp))
    amp = amp_dtype(t.amp, device)
    step_model = opt.model if t.compile == "off" else torch.compile(opt.model, mode=t.compile)
    loop = Loop(spec, opt, step_model, splits, steps, device, amp, rank, world)
    facts = model_facts(spec.model, splits.classes, **spec.model_options)
    if history and history[-1].epoch >= t.epochs:
        # Finished before a driver died unrecorded: report the last epoch again.
        session._report(encode(first_report(history[-1], segments, history, facts.params,
                                            facts.flops)))
        return
    for epoch in range(last_epoch(history) + 1, t.epochs + 1):
        result = loop.epoch(epoch, segment=len(segments) - 1)
        history.append(result)
        if rank == 0:
            checkpoints.save(run_dir, spec.key, epoch,
                             checkpoints.trial_state(opt.state(), history, segments))
        report = first_report(result, segments, history, facts.params, facts.flops) \
            if epoch == segments[-1].first_epoch else Report(result)
        session._report(encode(report))
        if result.train_loss is None:
            return  # diverged: the driver records it; nothing more to learn


def build(spec: TrialSpec, t: TrainConfig, classes: int, steps: int, device,
          world: int) -> Optimisation:
    model = create_model(spec.model, num_classes=classes, **spec.model_options)
    if t.sync_bn and world > 1:
        model = sync_bn.convert(model, device)
    model = model.to(device, memory_format=memory_format(t))
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t, steps))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(t.amp, device) == torch.float16)
    return Optimisation(model, optimizer, scheduler, scaler)


class Loop:
    """One trial's epochs: train on this worker's share of the global batches, then
    evaluate the validation and test splits (sums over all workers)."""

    def __init__(self, spec, opt, step_model, splits, steps, device, amp, rank, world):
        self.spec, self.opt, self.step_model, self.splits = spec, opt, step_model, splits
        self.steps, self.device, self.amp, self.rank, self.world = steps, device, amp, rank, world
        t = spec.train
        self.criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
        self.mix = data.batch_mix(t.augment, splits.classes)

    def epoch(self, epoch: int, segment: int) -> EpochResult:
        t, seed = self.spec.train, self.spec.seed
        begin = time.perf_counter()
        # Randomness inside the model (dropout, DropPath, MixUp) comes from each worker's
        # own torch RNG, seeded per (seed, epoch, rank) so a resumed epoch draws the same.
        torch.manual_seed(seed * 100_003 + epoch * 101 + self.rank)
        order = data.epoch_order(len(self.splits.train), seed, epoch)[:self.steps * t.batch_size]
        batches = data.train_batches(self.splits.train, order, t.batch_size, self.rank,
                                     self.world, seed * 100_003 + epoch, t.loader_workers)
        try:
            train_loss = self.train_epoch(batches)
        except torch.OutOfMemoryError:
            # A retry would fail the same way: say what to change, in the trial's record.
            raise RuntimeError(
                f"out of memory on {self.device} at {t.batch_size // self.world} images per "
                f"worker (batch_size={t.batch_size} over {self.world} workers, model "
                f"{self.spec.model}); lower batch_size or add workers") from None
        train_seconds = time.perf_counter() - begin
        val = self.evaluate(self.splits.val) if self.splits.val is not None else None
        test = self.evaluate(self.splits.test)
        val = val or (None, None, None)
        # A diverged model's losses are not finite: stored as missing, never as NaN.
        return EpochResult(
            epoch=epoch, train_loss=finite(train_loss),
            val_loss=finite(val[0]), val_top1=val[1], val_top5=val[2],
            test_loss=finite(test[0]), test_top1=test[1], test_top5=test[2],
            lr=self.opt.optimizer.param_groups[0]["lr"],
            epoch_seconds=time.perf_counter() - begin,
            images_per_s=self.steps * t.batch_size / train_seconds, segment=segment,
            optimizer_fingerprint=finite(optimizer_fingerprint(self.opt.optimizer)))

    def train_epoch(self, batches) -> float:
        """Mean training loss per image over the epoch, all workers."""
        opt, t = self.opt, self.spec.train
        self.step_model.train()
        fmt = memory_format(t)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for images, labels in batches:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
            labels = labels.to(self.device, non_blocking=True)
            if self.mix is not None:
                images, labels = self.mix(images, labels)
            with autocast(self.device, self.amp):
                loss = self.criterion(self.step_model(images), labels)
            opt.optimizer.zero_grad(set_to_none=True)
            opt.scaler.scale(loss).backward()
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.scheduler.step()
            loss_sum += loss.detach().double() * len(images)
            seen += len(images)
        sums = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64,
                                                    device=self.device)])
        if self.world > 1:
            dist.all_reduce(sums)
        return (sums[0] / sums[1].clamp(min=1)).item()

    @torch.no_grad()
    def evaluate(self, split) -> tuple[float, float, float]:
        """(loss, top-1 %, top-5 %) over the whole split, summed across ranks."""
        model, t = self.opt.model, self.spec.train
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top1, top5, n
        k = min(5, self.splits.classes)
        for images, labels in data.eval_batches(split, self.rank, self.world, t.loader_workers):
            images = images.to(self.device).contiguous(memory_format=memory_format(t))
            labels = labels.to(self.device)
            with autocast(self.device, self.amp):
                logits = model(images).float()
            hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
            sums += torch.stack([
                nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                torch.tensor(float(len(labels)), dtype=torch.float64, device=self.device)])
        if self.world > 1:
            dist.all_reduce(sums)
        loss, top1, top5, n = sums.tolist()
        return loss / n, 100 * top1 / n, 100 * top5 / n


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """At `peak_lr`, the lr the driver resolved for the global batch (never rescaled here)."""
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.peak_lr, momentum=t.momentum,
                               weight_decay=t.weight_decay, nesterov=False)
    return torch.optim.AdamW(model.parameters(), lr=t.peak_lr, betas=tuple(t.betas),
                             weight_decay=t.weight_decay)


def lr_factor(t: TrainConfig, steps_per_epoch: int):
    """The schedule as a multiplier of the peak lr per global optimizer step."""
    total, warm = t.epochs * steps_per_epoch, t.warmup_epochs * steps_per_epoch
    kind = t.scheduler

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if kind == "multistep":  # ×0.1 at 50% and 75% of the budget
            return 0.1 ** sum(epoch >= m * t.epochs for m in (0.5, 0.75))
        if kind == "step_halve_5":  # paper 004: halve every 5 epochs
            return 0.5 ** (epoch // 5)
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def optimizer_fingerprint(optimizer: torch.optim.Optimizer) -> float:
    """Sum of |x| over the optimizer's state tensors (momentum, Adam moments)."""
    return float(sum(v.double().abs().sum() for st in optimizer.state.values()
                     for v in st.values() if torch.is_tensor(v) and v.is_floating_point()))


def new_segment(launch: Launch, world: int, device, history, opt, state, skipped,
                amp: str) -> Segment:
    return Segment(
        first_epoch=last_epoch(history) + 1, runner=launch.runner, workers=world,
        cpus_per_worker=launch.resources.cpus_per_worker,
        gpus_per_worker=launch.resources.gpus_per_worker, device=str(device),
        hosts=_gather_hosts(world),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        setup_seconds=time.time() - launch.launched_at,
        resumed_from_epoch=history[-1].epoch if history else None,
        resumed_optimizer_fingerprint=optimizer_fingerprint(opt.optimizer) if state else None,
        worker_pid=os.getpid(), skipped_checkpoints=skipped,
        precision=PRECISIONS[amp_dtype(amp, device)])


# --- small helpers ---

def last_epoch(history: list[EpochResult]) -> int:
    return history[-1].epoch if history else 0


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def memory_format(t: TrainConfig):
    return torch.channels_last if t.channels_last else torch.contiguous_format


PRECISIONS = {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def amp_dtype(amp: str, device: torch.device):
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def _gather_hosts(world: int) -> str:
    """`hostname/node id` of every rank, comma-joined in rank order (where DDP placed them)."""
    me = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    if world == 1:
        return me
    out = [None] * world
    dist.all_gather_object(out, me)
    return ",".join(out)
