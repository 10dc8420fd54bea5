"""Shared bits of the benchmarks: interleaved timing and a description of the machine."""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from raysweep.core.recipes import resolve
from raysweep.study.parse import TRAIN_SCHEMA
from raysweep.core.trial import TrainConfig


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(cases: dict, repeats: int, device="cpu") -> dict[str, float]:
    """Median images/s of each case; cases run in turn (A B C A B C …) so that a noisy
    neighbour on the machine slows all of them alike. A case returns images processed."""
    rates = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            begin = time.perf_counter()
            n = fn()
            sync(device)
            rates[name].append(n / (time.perf_counter() - begin))
    return {name: statistics.median(r) for name, r in rates.items()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def resolved_train(recipe: str, val_fraction: float = 0.0, **values) -> TrainConfig:
    """A trial's TrainConfig as a study resolves it: the study defaults, `values` on
    top, under `recipe` (no validation split unless asked)."""
    train = {k: default for k, (_, default) in TRAIN_SCHEMA.items()
             if k not in ("recipe", "val_fraction")}
    train.update(values)
    return resolve(recipe, train, val_fraction=val_fraction)
