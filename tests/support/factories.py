"""Hand-built trial records for tests of everything that reads records (tables, status,
TensorBoard, ...): real `TrialRecord`s, written where a run writes them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from models import list_models
from raysweep.store.records import write_record
from raysweep.core.trial import (ArmLabel, EpochResult, Segment, TrainConfig, TrialRecord,
                            TrialSpec)

TRAIN = TrainConfig(
    recipe="sgd", optimizer="sgd", epochs=3, batch_size=64, lr=0.1, lr_scaling="none",
    lr_base_batch=1024, peak_lr=0.1, momentum=0.9, betas=None, weight_decay=5e-4,
    warmup_epochs=0, scheduler="cosine", label_smoothing=0.0, augment="basic", sync_bn=True,
    dataset="synthetic", train_size=512, test_size=256, test_fraction=None, val_fraction=0.1,
    split_seed=0,
    synthetic_classes=10, data_fingerprint=None, amp="off", pipeline="tensor",
    channels_last=False, compile="off", data_dir="/tmp/data", download=False,
    data_checksums=True, loader_workers=0)


def spec(model: str = "resnet_20", seed: int = 0, group: str | None = None,
         variant: str | None = None, baseline: bool = False, study: str = "s",
         options: dict | None = None, **train) -> TrialSpec:
    label = ArmLabel(group, variant or (model if group is None else "baseline"), baseline, model)
    trial = TrialSpec(study, model, dict(options or {}), seed, TRAIN.replace(**train), (label,))
    if model not in list_models():   # a made-up name (long names in tables): its own network
        trial.__dict__["network"] = f"{model}-network"
    return trial


def search_sample(trial: TrialSpec, sample: int, **values) -> TrialSpec:
    """`trial` as search sample `sample` with `values` sampled into its TrainConfig. The
    factories' lr_scaling is "none", so peak_lr is lr (`trial.rescale` is not needed)."""
    peak = {"peak_lr": values["lr"]} if "lr" in values else {}
    return dataclasses.replace(trial, train=trial.train.replace(**values, **peak),
                               searched=dict(values), sample=sample)


def epoch(n: int, val_top1: float | None = 50.0, test_top1: float = 50.0, segment: int = 0,
          epoch_seconds: float = 10.0, **extra) -> EpochResult:
    values = dict(epoch=n, train_loss=1.0, val_loss=1.0 if val_top1 is not None else None,
                  val_top1=val_top1, val_top5=None if val_top1 is None else min(100.0, val_top1 + 20),
                  test_loss=1.0, test_top1=test_top1, test_top5=min(100.0, test_top1 + 20),
                  lr=0.1, epoch_seconds=epoch_seconds, images_per_s=1000.0, segment=segment,
                  optimizer_fingerprint=1.0)
    return EpochResult(**{**values, **extra})


def segment(first_epoch: int = 1, workers: int = 1, gpus_per_worker: float = 0.0,
            runner: str = "inline") -> Segment:
    return Segment(first_epoch=first_epoch, runner=runner, workers=workers, cpus_per_worker=1.0,
                   gpus_per_worker=gpus_per_worker, device="cpu", hosts="host/node",
                   started_at="2026-11-24T00:00:00+00:00", setup_seconds=1.0,
                   resumed_from_epoch=None, resumed_optimizer_fingerprint=None, worker_pid=1)


def record(trial: TrialSpec | None = None, status: str = "completed",
           top1: list[float] | None = None, val_top1: list[float] | None = None,
           family: str = "baseline", params: int = 278_324, flops: int = 81_637_888,
           **fields) -> TrialRecord:
    """A record whose history has one epoch per `top1` value (test top-1); `val_top1`
    defaults to the same values. status "stopped"/"diverged" set stopped_at_epoch."""
    trial = trial or spec()
    top1 = top1 if top1 is not None else [50.0] * trial.train.epochs
    val = val_top1 if val_top1 is not None else top1
    rec = TrialRecord.new(trial, family, False, "2026-11-24T00:00:00+00:00")
    rec.history = [epoch(i + 1, v, t) for i, (t, v) in enumerate(zip(top1, val))]
    rec.segments = [segment()]
    rec.params, rec.flops, rec.status = params, flops, status
    rec.finished_at = None if status == "running" else "2026-11-24T01:00:00+00:00"
    if status in ("stopped", "diverged", "interrupted"):
        rec.stopped_at_epoch = rec.last_epoch
    return dataclasses.replace(rec, **fields)


def write_run(folder: Path, records: list[TrialRecord]) -> Path:
    """A run folder holding these records (as `raysweep run` leaves it, minus Ray's files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        write_record(folder, r)
    return folder
