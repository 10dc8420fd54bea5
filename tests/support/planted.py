"""A stand-in for `trainable.run_trial` that reports planted accuracies instead of training
(what `run_study(trial_function=...)` is for), so a test knows the truth the engine's
decisions should find. Everything else is the real path: Tune, the scheduler, the record
writer, the driver's rounds.

A trial's planted final top-1 is 80 + Δ, Δ read from its variant name (`drop20`: −20,
`same`: 0; a baseline: 0); its seed adds normal noise of standard deviation NOISE[group]
(QUIET for other groups), drawn from the arm and the seed, so a seed is the same trial
whenever it runs. Validation and test top-1 follow the same saturating curve. A trial
relaunched after Tune paused it continues from the epochs its record holds, as a real
trial continues from its checkpoint.
"""
from __future__ import annotations

import os
import re
import sys
import zlib

import numpy as np
import ray.cloudpickle

# Pickled by value: the trial's process (a worker of a Ray that another pytest process
# may have started) cannot import tests/support.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

NOISE = {"noisy": 3.0}
QUIET = 0.02


def planted_top1(spec, epoch: int) -> float:
    """The trial's top-1 at `epoch` (both splits)."""
    label = next((x for x in spec.labels if x.group), None)
    found = re.search(r"drop(\d+)", label.variant or "") if label and not label.baseline else None
    delta = -float(found.group(1)) if found else 0.0
    sd = NOISE.get(label.group, QUIET) if label else QUIET
    noise = np.random.default_rng([zlib.crc32(spec.arm_key.encode()), spec.seed]).normal(0, sd)
    return 80.0 + delta + noise - 30 * 0.5 ** (epoch - 1)


def planted_trial(config: dict, context) -> None:
    import ray.tune

    from raysweep.core.report import Report, encode, first_report
    from raysweep.core.trial import EpochResult, Segment
    from raysweep.store.records import read_record
    from raysweep.store.storage import location

    spec = context.spec(config)
    before = read_record(location(context.run_dir), spec.key)
    history = list(before.history) if before and not before.finished else []
    segments = list(before.segments) if history else []
    segments.append(Segment(
        first_epoch=len(history) + 1, runner="inline", workers=1, cpus_per_worker=1.0,
        gpus_per_worker=0.0, device="cpu", hosts="localhost",
        started_at="2026-01-01T00:00:00+00:00", setup_seconds=0.0, resumed_from_epoch=None,
        resumed_optimizer_fingerprint=None, worker_pid=os.getpid()))
    for epoch in range(len(history) + 1, spec.train.epochs + 1):
        top1 = planted_top1(spec, epoch)
        result = EpochResult(epoch=epoch, train_loss=1.0, val_loss=1.0, val_top1=top1,
                             val_top5=99.0, test_loss=1.0, test_top1=top1, test_top5=99.0,
                             lr=0.1, epoch_seconds=0.01, images_per_s=1000.0,
                             segment=len(segments) - 1, optimizer_fingerprint=None)
        first = epoch == len(history) + 1
        report = first_report(result, segments, history, 0, 0) if first else Report(result)
        ray.tune.report(encode(report))
