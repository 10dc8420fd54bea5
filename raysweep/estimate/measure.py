"""Measuring a model's step time on a device (torch): a few forward + backward +
optimizer steps on random 32×32 images at two per-worker batches, and forward passes
without gradients at the same two, timed after warm-up (the constants and what the
numbers are used for: `raysweep.estimate.cost`). Only `estimate` imports this module, when
it has something to measure: the arithmetic, the cache and `raysweep run`'s estimate do
without torch."""
from __future__ import annotations

import math
import os
import socket
import statistics
import time
from datetime import datetime, timezone
from functools import partial
from typing import Callable

import torch

from raysweep.core.trial import TrialSpec
from raysweep.estimate.cost import (PROBE_CPU_FLOPS, PROBE_CPU_RANGE, PROBE_GPU, TIMED_BUDGET_S,
                                    TIMED_STEPS, WARMUP_STEPS, StepTime, _classes, cpu_name)


def measure_step_time(spec: TrialSpec, device: torch.device, threads: int = 1,
                      probe: int | None = None) -> StepTime:
    """Time a few training and evaluation steps of `spec`'s model on `device` at probe
    batches (probe/2, probe) per worker; `probe` defaults by device and model size and
    is halved while it runs out of GPU memory."""
    probe = probe or probe_batch(spec, device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        while True:
            batches = (max(1, probe // 2), probe)
            try:
                train, evals = _probe(spec, device, batches)
                break
            except torch.OutOfMemoryError:
                if probe <= 4:
                    raise
            # outside the except block, so the failed attempt's tensors are free
            torch.cuda.empty_cache()
            probe //= 2
    finally:
        torch.set_num_threads(previous)
    return StepTime(spec.model, dict(spec.model_options), device_name(device), device.type,
                    socket.gethostname(), threads, batches,
                    tuple(statistics.median(t) for t in train),
                    tuple(statistics.median(t) for t in evals),
                    min(len(t) for t in train + evals),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), _load())


def _probe(spec: TrialSpec, device: torch.device, batches: tuple[int, int]):
    """Per-step seconds of training steps and of evaluation passes at each batch."""
    from models import create_model

    model = create_model(spec.model, num_classes=_classes(spec), **spec.model_options)
    model = model.to(device, memory_format=_layout(spec))
    optimizer = _optimizer(model, spec.train.optimizer)
    train = [_time(partial(_train_step, model, optimizer, b, spec, device), device)
             for b in batches]
    evals = [_time(partial(_eval_step, model, b, spec, device), device) for b in batches]
    return train, evals


def probe_batch(spec: TrialSpec, device: torch.device) -> int:
    if device.type == "cuda":
        return PROBE_GPU
    from models import model_facts

    flops = model_facts(spec.model, **spec.model_options).flops
    low, high = PROBE_CPU_RANGE
    fit = PROBE_CPU_FLOPS / (3 * flops)
    return int(min(high, max(low, 2 ** math.floor(math.log2(max(fit, 1))))))


def _time(step: Callable[[], None], device: torch.device) -> list[float]:
    """Per-step seconds of up to TIMED_STEPS steps after WARMUP_STEPS (at least one)."""
    for _ in range(WARMUP_STEPS):
        step()
    _sync(device)
    times, begin = [], time.perf_counter()
    while len(times) < TIMED_STEPS and (not times or time.perf_counter() - begin < TIMED_BUDGET_S):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _train_step(model, optimizer, batch: int, spec: TrialSpec, device: torch.device) -> None:
    images, labels = _batch(batch, spec, device)
    model.train()
    with _autocast(spec, device):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def _eval_step(model, batch: int, spec: TrialSpec, device: torch.device) -> None:
    images, _ = _batch(batch, spec, device)
    model.eval()
    with _autocast(spec, device):
        model(images).float()


def _batch(batch: int, spec: TrialSpec, device: torch.device):
    images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=_layout(spec))
    return images, torch.randint(0, _classes(spec), (batch,), device=device)


def _optimizer(model, kind: str) -> torch.optim.Optimizer:
    # The step's cost, not its values, matters: lr and decay are placeholders.
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    return torch.optim.AdamW(model.parameters(), lr=1e-4)


def _autocast(spec: TrialSpec, device: torch.device):
    """As the worker trains: bf16 autocast on a GPU unless amp says otherwise."""
    amp = spec.train.amp
    if device.type != "cuda" or amp == "off":
        return torch.autocast(device.type, enabled=False)
    fp16 = amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported())
    dtype = torch.float16 if fp16 else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _layout(spec: TrialSpec):
    return torch.channels_last if spec.train.channels_last else torch.contiguous_format


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:   # not available on this platform
        return 0.0


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
