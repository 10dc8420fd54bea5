"""The train loop of one trial: one backbone, DDP across the trial's workers.

It runs in one of two places (a *session*): on every rank of a Ray Train worker group
(`train_loop_per_worker`, the default), or, for a one-worker trial under `--local`,
inside the trial's Tune function itself (`train_inline`), which saves starting a Train
controller and a worker process per trial. Per epoch it reports rank 0's metrics with a
checkpoint; on a restart (worker failure or a resumed study) it continues from the
latest checkpoint at the next epoch.
"""
from __future__ import annotations

import json
import math
import os
import random
import socket
import tempfile
import time
from contextlib import nullcontext

import ray
import ray.train
import ray.train.torch
import ray.tune
import torch
import torch.distributed as dist
import torch.nn as nn

from models import count_flops, count_params, create_model
from raysweep import data
from raysweep.records import HISTORY_KEYS

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = "raysweep-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that is not a raysweep trial checkpoint or is damaged."""


class TrainSession:
    """A rank of a Ray Train worker group; Train restarts the group on a worker failure."""

    def __init__(self):
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def checkpoint(self):
        return ray.train.get_checkpoint()

    def report(self, metrics: dict, directory: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory)
                         if directory else None)


class InlineSession:
    """The trial's Tune function as its only worker: Tune retries a failed trial from its
    latest checkpoint, and `earlier` is the checkpoint a killed driver's run left."""

    rank, world = 0, 1

    def __init__(self, earlier: str | None):
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (or its fraction of one).
        self.device = torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cpu")
        self.earlier = earlier

    def checkpoint(self):
        found = ray.tune.get_checkpoint()
        if found is None and self.earlier:
            found = ray.tune.Checkpoint.from_directory(self.earlier)
        return found

    def report(self, metrics: dict, directory: str | None) -> None:
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(directory)
                        if directory else None)


def train_loop_per_worker(cfg: dict) -> None:
    """Entry point of every Ray Train worker."""
    train(cfg, TrainSession())


def train_inline(cfg: dict, earlier_checkpoint: str | None = None) -> None:
    """Entry point of a trial that runs inside its Tune function (no Train workers)."""
    train(cfg, InlineSession(earlier_checkpoint))


def train(cfg: dict, session) -> None:
    rank, world, device = session.rank, session.world, session.device
    torch.set_num_threads(max(1, int(cfg["cpus_per_worker"])))
    t = cfg["train"]

    _seed_all(cfg["seed"])  # same init on every rank; DDP also broadcasts rank 0's weights
    model = create_model(cfg["model"], num_classes=data.num_classes(t), **cfg["model_options"])
    params, flops = count_params(model), count_flops(model) if rank == 0 else None
    model = model.to(device, memory_format=_memory_format(t))
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_ds, test_ds = data.splits(t, device)
    steps = len(train_ds) // world // t["batch_size"]
    if steps == 0:
        raise ValueError(f"batch_size={t['batch_size']} per worker is larger than the "
                         f"{len(train_ds) // world} training images each of {world} workers gets")
    optimizer = make_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t, steps))
    amp_dtype = _amp_dtype(t["amp"], device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step_fn = torch.compile(model) if t["compile"] else model

    start_epoch, restarts, resumed_fingerprint, history = 1, 0, None, []
    ckpt = session.checkpoint()
    if ckpt:
        with ckpt.as_directory() as folder:
            state = load_checkpoint(folder)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, restarts = state["epoch"] + 1, state["restarts"] + 1
        resumed_fingerprint = optimizer_fingerprint(optimizer)
        history = state["history"]
    hosts = _gather_hosts(world)
    criterion = nn.CrossEntropyLoss(label_smoothing=t["label_smoothing"])
    mix = data.batch_mix(t["augment"], data.num_classes(t))
    # launch → first epoch: Ray Train's worker-group set-up plus ours (data, model).
    # After a worker restart the launch time is stale, so it is only measured once.
    setup_seconds = time.time() - cfg["launched_at"] if not restarts else None

    for epoch in range(start_epoch, t["epochs"] + 1):
        begin = time.perf_counter()
        # Seeding per (seed, epoch, rank) makes a resumed epoch draw the same augmentations.
        epoch_seed = cfg["seed"] * 100_003 + epoch * 101 + rank
        torch.manual_seed(epoch_seed)
        train_loader = data.batches(train_ds, data.shard(len(train_ds), rank, world, cfg["seed"],
                                                         epoch), t["batch_size"],
                                    t["loader_workers"], True, epoch_seed, device)
        try:
            train_loss, seen = train_epoch(step_fn, train_loader, optimizer, scheduler, scaler,
                                           criterion, mix, device, amp_dtype, t)
        except torch.OutOfMemoryError:
            # A retry would fail the same way: say what to change, in the trial's record.
            raise RuntimeError(
                f"out of memory on {device} at batch_size={t['batch_size']} per worker "
                f"(model {cfg['model']}); lower batch_size or add workers") from None
        train_seconds = time.perf_counter() - begin
        val = evaluate(model, test_ds, rank, world, device, amp_dtype, t)
        metrics = {
            "epoch": epoch, "train_loss": train_loss, **val,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - begin,
            "images_per_s": seen * world / train_seconds,
            "params": params, "flops": flops, "world_size": world, "rank": rank,
            "hosts": hosts, "restarts": restarts, "device": str(device),
            # rank 0's process, the one to look at (Tune's own "pid" is the trial's Tune actor)
            "worker_pid": os.getpid(),
            "setup_seconds": setup_seconds if epoch == start_epoch else None,
            "diverged": not math.isfinite(train_loss),
            # lets a record show that a restarted trial continued with the saved optimizer
            "optimizer_fingerprint": optimizer_fingerprint(optimizer),
            "resumed_optimizer_fingerprint": resumed_fingerprint if epoch == start_epoch else None,
            # a JSON string, not a list: Tune's TensorBoard logger keeps only scalars/strings
            "resumed_history_json": json.dumps(history) if epoch == start_epoch and history
            else None,
        }
        history.append({k: metrics[k] for k in (*HISTORY_KEYS, "optimizer_fingerprint")})
        _report(session, metrics, history, model, optimizer, scheduler, scaler, epoch, restarts)
        if metrics["diverged"]:
            return  # the driver records "diverged at epoch e"; nothing more to learn


def train_epoch(model, loader, optimizer, scheduler, scaler, criterion, mix, device,
                amp_dtype, t) -> tuple[float, int]:
    model.train()
    loss_sum, seen = torch.zeros((), device=device), 0
    fmt = _memory_format(t)
    for images, labels in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=fmt)
        labels = labels.to(device, non_blocking=True)
        if mix is not None:
            images, labels = mix(images, labels)
        with _autocast(device, amp_dtype):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach() * len(images)
        seen += len(images)
    return (loss_sum / max(seen, 1)).item(), seen


@torch.no_grad()
def evaluate(model, test_ds, rank, world, device, amp_dtype, t) -> dict:
    """Loss, top-1 and top-5 (percent) over the whole test split, summed across ranks."""
    model.eval()
    idx = data.shard(len(test_ds), rank, world, None, 0)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    k = min(5, data.num_classes(t))
    for images, labels in data.batches(test_ds, idx, 256, t["loader_workers"], False, 0, device):
        images = images.to(device).contiguous(memory_format=_memory_format(t))
        labels = labels.to(device)
        with _autocast(device, amp_dtype):
            logits = model(images).float()
        topk = logits.topk(k, dim=1).indices
        hits = topk.eq(labels[:, None])
        sums += torch.stack([
            nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
            hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
            torch.tensor(float(len(labels)), dtype=torch.float64, device=device)])
    if world > 1:
        dist.all_reduce(sums)
    loss, top1, top5, n = sums.tolist()
    return {"val_loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n}


def make_optimizer(model: nn.Module, t: dict) -> torch.optim.Optimizer:
    lr = t["lr"] * t["batch_size"] / 128  # recipe lr is per 128 images per worker
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=t["momentum"],
                               weight_decay=t["weight_decay"], nesterov=False)
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(t["betas"]),
                             weight_decay=t["weight_decay"])


def lr_factor(t: dict, steps_per_epoch: int):
    """The schedule as a multiplier of the peak lr per optimizer step."""
    total, warm = t["epochs"] * steps_per_epoch, t["warmup_epochs"] * steps_per_epoch
    kind = t["scheduler"]

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if kind == "multistep":  # ×0.1 at 50% and 75% of the budget
            return 0.1 ** sum(epoch >= m * t["epochs"] for m in (0.5, 0.75))
        if kind == "step_halve_5":  # seed 004: halve every 5 epochs
            return 0.5 ** (epoch // 5)
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


# --- checkpoints ---

def optimizer_fingerprint(optimizer: torch.optim.Optimizer) -> float:
    """Sum of |x| over the optimizer's state tensors (momentum, Adam moments)."""
    return float(sum(v.double().abs().sum() for st in optimizer.state.values()
                     for v in st.values() if torch.is_tensor(v) and v.is_floating_point()))


def _report(session, metrics, history, model, optimizer, scheduler, scaler, epoch,
            restarts) -> None:
    # Only rank 0 writes a checkpoint; every rank must call report (it is a barrier).
    if session.rank != 0:
        session.report(metrics, None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "restarts": restarts,
            "history": history,
            "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }, os.path.join(tmp, CHECKPOINT_FILE))
        session.report(metrics, tmp)


def load_checkpoint(path: str) -> dict:
    """A trial checkpoint, loaded with weights_only=True (never executes pickled code)."""
    file = os.path.join(path, CHECKPOINT_FILE)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {file!r} is unreadable: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {file!r} is not a {CHECKPOINT_FORMAT} checkpoint")
    torch.set_rng_state(state["rng_cpu"])
    return state


# --- small helpers ---

def _seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _memory_format(t: dict):
    return torch.channels_last if t["channels_last"] else torch.contiguous_format


def _amp_dtype(amp: str, device: torch.device):
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def _gather_hosts(world: int) -> str:
    """`hostname/node id` of every rank, comma-joined in rank order (where DDP placed them).
    A string, not a list, so Tune's TensorBoard logger can keep it."""
    me = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    if world == 1:
        return me
    out = [None] * world
    dist.all_gather_object(out, me)
    return ",".join(out)
