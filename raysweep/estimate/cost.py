"""What a study will cost before it runs: trial-hours, wall hours and GPU-hours, with and
without ASHA's expected savings, from a short measured step time per model.

    est = estimate(specs, AshaConfig(True, 1, 4), resources, concurrent=3)
    print("\\n".join(format_estimate(est)))
    estimate(specs, asha, resources, concurrent=1, gpus=8)   # 8 GPUs of the measured kind
    estimate_on_profile(specs, asha, resources, 8, profile("h100"))  # measured elsewhere

How it is measured: for each distinct (model, options, optimizer, amp, layout) the model
is built on the target device and a few forward + backward + optimizer steps on random
32×32 images are timed (median, after warm-up) at two per-worker batches b/2 and b, and
a forward pass without gradients at the same two sizes. A line through the two points
(a fixed time per step plus a time per image) gives the step time at the trial's
per-worker batch: on a GPU a small step is bound by kernel launches (benchmarks/README:
~10 ms per resnet_20 step whatever its batch), so scaling one small-batch time in
proportion would overestimate a large batch several-fold; on a CPU the fixed part is
near zero and the line is plain proportional scaling. Measurements are cached per
machine and device in ~/.cache/raysweep/step_times.json, so a second estimate is instant;
a measurement taken while other work loaded the machine says so (its load per core), and
deleting the file measures again.

What it leaves out: start-up, data loading and augmentation, DDP gradient traffic,
torch.compile, and the slowdown of trials packed on one GPU (taken at the speed of one
trial alone). Trials sharing a CPU machine are assumed to get their own cores, as the
resource planner gives them.

Units: seconds and hours of wall time; batch sizes in images; GPU-hours are hours ×
GPUs held (a quarter GPU for an hour is 0.25), as `TrialRecord.gpu_hours` counts them.
"""
from __future__ import annotations

import json
import math
import platform
import socket
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from raysweep.datasets import readers as datasets
from raysweep.errors import EstimateError
from raysweep.core.trial import TrialResources, TrialSpec
from raysweep.estimate.profiles import EVAL_SHARE, AcceleratorProfile, profiles
from raysweep.decide.rungs import milestones
from raysweep.study.sections import AshaConfig

CACHE_FILE = Path("~/.cache/raysweep/step_times.json")
CACHE_VERSION = 1
EVAL_BATCH = 256              # images per evaluation step (worker.evaluate)
# Training and test split sizes (images); `train_size`/`test_size` cut them, and the
# synthetic set's are datasets.load's defaults when no size is set.
# Probe batch b (images per worker; b/2 is the other point): on a GPU large enough to
# leave the launch-bound regime; on a CPU a step of about PROBE_CPU_FLOPS (forward +
# backward ≈ 3 × forward FLOPs), so that a 25-GFLOP model is measured in seconds.
PROBE_GPU = 256
PROBE_CPU_FLOPS = 10e9
PROBE_CPU_RANGE = (4, 64)
WARMUP_STEPS = 2              # untimed steps per probe batch (allocation, kernel selection)
TIMED_STEPS = 5               # at most; the median is taken
TIMED_BUDGET_S = 1.0          # stop timing a probe after this many seconds (>= 1 step)
EXACT_ASHA_TRIALS = 5_000     # above this many trials ASHA's savings use the large-study limit
# `raysweep run` asks before starting a study estimated at this much or more (on a
# terminal; --yes skips the question), and measures step times it has none of for a study
# of at least MEASURE_TRIAL_EPOCHS (a smaller one starts without an estimate).
ASK_GPU_HOURS = 24.0
ASK_WALL_HOURS = 8.0
MEASURE_TRIAL_EPOCHS = 1_000


@dataclass(frozen=True)
class StepTime:
    """One measurement: a model's step times at two per-worker batches on one device."""
    model: str
    options: dict[str, Any]
    device: str               # the device's name ("NVIDIA H100 80GB HBM3", a CPU model name)
    device_type: str          # cpu | cuda
    host: str
    threads: int              # CPU threads of the measuring process (a worker's cpus)
    batches: tuple[int, int]  # per-worker probe batches (b/2, b), images
    train_s: tuple[float, float]   # seconds per forward + backward + optimizer step, median
    eval_s: tuple[float, float]    # seconds per forward pass without gradients, median
    timed_steps: int          # timed steps per probe (the fewest of the four)
    measured_at: str          # ISO-8601 UTC
    load: float               # the machine's 1-minute load average per CPU core then:
                              # above 1, other work was slowing the measurement
    cached: bool = False      # read from the cache rather than measured now

    def train_step(self, batch: float) -> float:
        """Seconds per training step at `batch` images per worker."""
        return _through(self.batches, self.train_s, batch)

    def eval_step(self, batch: float) -> float:
        return _through(self.batches, self.eval_s, batch)


@dataclass(frozen=True)
class Cost:
    trial_epochs: float       # epochs summed over trials (expected, under ASHA)
    trial_hours: float        # training and evaluation hours summed over trials
    wall_hours: float         # at the estimate's concurrency
    gpu_hours: float | None   # trial-hours × GPUs each trial holds; None on CPUs


@dataclass(frozen=True)
class Estimate:
    target: str               # what it is for: "this CPU (...)", "8 × NVIDIA H100 ..."
    concurrency: str          # "3 at once" (trials) | "on 8 GPUs"
    trials: int
    full: Cost                # every trial runs its epoch budget
    asha: Cost | None         # ASHA's expected savings applied; None when ASHA is off
    asha_settings: AshaConfig
    step_times: tuple[StepTime, ...]
    scaled_to: tuple[int, ...]   # the trials' per-worker batches, images
    profile: AcceleratorProfile | None = None   # the step times came from it, not measured
    unpacked: Cost | None = None  # (with a profile) the same trials at one GPU each


# --- ASHA's expected savings ---

def asha_expected_epochs(epochs: int, grace_period: int, reduction_factor: int,
                         trials: int | None = None) -> float:
    """Expected epochs per trial under ASHA when trials are promoted at random: a trial's
    result at a rung is a random draw, and trials reach a rung in random order (the
    neutral assumption: how well the metric ranks the trials changes which trials
    continue, not how many).

    trials=None: the large-study limit, 1/η of the trials reaching a rung continue.
    trials=n: Ray's rule for n trials: a trial continues unless its result is below the
    (1 - 1/η) quantile of the results recorded at that rung so far, so the first trial
    at every rung continues and a small study saves less than the limit says."""
    rungs = milestones(epochs, grace_period, reduction_factor)
    ends = [*rungs, epochs]
    if trials is None or trials > EXACT_ASHA_TRIALS:
        reaching = [reduction_factor ** -k for k in range(len(ends))]
    else:
        reaching = [count / trials for count in _expected_reaching(trials, len(rungs),
                                                                   reduction_factor)]
    return sum(share * (end - start) for share, start, end in zip(reaching, [0, *rungs], ends))


def _expected_reaching(trials: int, rungs: int, reduction_factor: int) -> list[float]:
    """Expected number of trials that run past each of `rungs` rungs (the first entry:
    all of them), by the exact distribution of survivors from rung to rung."""
    import numpy as np

    continue_p = _continue_probability(trials, reduction_factor)
    count = np.zeros(trials + 1)
    count[trials] = 1.0          # the distribution of trials arriving at the next rung
    out = [float(trials)]
    for _ in range(rungs):
        count = _survivors(count, continue_p)
        out.append(float(count @ np.arange(trials + 1)))
    return out


def _continue_probability(trials: int, reduction_factor: int):
    """P(the j-th trial to reach a rung continues), j = 1..trials, for random results:
    its rank among the j results is uniform, and np.nanpercentile's cutoff lies at
    position q(j-2) (q = 1 - 1/η) between the earlier results' order statistics a and
    a+1; within that gap a random result clears the cutoff with probability 1 - frac."""
    import numpy as np

    j = np.arange(1, trials + 1, dtype=float)
    position = (1 - 1 / reduction_factor) * np.maximum(j - 2, 0)
    a = np.floor(position)
    p = (j - 2 - a + 1 - (position - a)) / j
    p[0] = 1.0                   # no recorded result yet: no cutoff
    return p


def _survivors(arriving, continue_p):
    """The distribution of trials continuing past a rung, given the distribution of
    trials arriving at it: for m arrivals, a sum of Bernoulli(p_1..p_m). Arrival counts
    below 1e-14 probability are skipped (their mass is negligible, and skipping them
    keeps a rung to O(n × survivors) instead of O(n²))."""
    import numpy as np

    likely = np.nonzero(arriving > 1e-14)[0]
    out = np.zeros(len(arriving))
    passed = np.zeros(len(arriving))
    passed[0] = 1.0              # among the first m arrivals, how many continued
    out[0] = arriving[0]
    for m in range(1, likely.max() + 1):
        p = continue_p[m - 1]
        passed[1:m + 1] = passed[1:m + 1] * (1 - p) + passed[:m] * p
        passed[0] *= 1 - p
        if arriving[m] > 1e-14:
            out[:m + 1] += arriving[m] * passed[:m + 1]
    return out


# --- the arithmetic ---

def estimate_from(specs: list[TrialSpec], step_times: Mapping[tuple[str, str], StepTime],
                  asha: AshaConfig, resources: TrialResources | Mapping[str, TrialResources],
                  concurrent: int, gpus: int | None = None, target: str = "this machine",
                  speed: Callable[[TrialResources], float] | None = None) -> Estimate:
    """The cost of `specs` from measured step times (keyed by `measure_key(spec)`).
    `concurrent`: trials at once on this machine; `gpus`: for that many GPUs of the
    measured kind instead, the trials packed by the GPU share each holds (a trial
    planned without GPUs takes one per worker).

    Wall hours: the trial-hours spread over the concurrent trials (or the GPU-hours over
    the GPUs), and never less than one trial's whole budget: the longest trial without
    ASHA; with ASHA, an average trial, since at least one trial runs to the end.
    `speed(resources)`: a trial's speed relative to alone on its device (packed trials
    share a GPU); 1 when not given."""
    if not specs:
        raise EstimateError("no trials to estimate; allowed: a study with at least one trial")
    rows = []                    # (epochs, seconds per epoch, GPUs held) per trial
    for spec in specs:
        res = _resources(resources, spec)
        held = res.workers * (res.gpus_per_worker or (1.0 if gpus else 0.0))
        seconds = epoch_seconds(spec, step_times[measure_key(spec)], res.workers)
        rows.append((spec.train.epochs, seconds / (speed(res) if speed else 1.0), held))

    def cost(epochs_of, floor_s: float) -> Cost:
        epochs = [epochs_of(e) for e, _, _ in rows]
        trial_s = sum(n * secs for n, (_, secs, _) in zip(epochs, rows))
        gpu_s = sum(n * secs * held for n, (_, secs, held) in zip(epochs, rows))
        spread = gpu_s / gpus if gpus else trial_s / concurrent
        return Cost(sum(epochs), trial_s / 3600, max(spread, floor_s) / 3600,
                    gpu_s / 3600 if gpu_s else None)

    budgets = [e * secs for e, secs, _ in rows]
    full = cost(lambda e: e, max(budgets))
    saved = cost(lambda e: asha_expected_epochs(e, asha.grace_period, asha.reduction_factor,
                                                trials=len(specs)),
                 statistics.mean(budgets)) if asha.enabled else None
    measured = {measure_key(s): step_times[measure_key(s)] for s in specs}
    batches = {round(s.train.batch_size / _resources(resources, s).workers) for s in specs}
    return Estimate(target, f"on {gpus} GPUs" if gpus else f"{concurrent} at once",
                    len(specs), full, saved, asha, tuple(measured.values()),
                    tuple(sorted(batches)))


def epoch_seconds(spec: TrialSpec, step: StepTime, workers: int) -> float:
    """One epoch: the training steps every worker takes in parallel (the global batch
    split over the workers, the last partial batch dropped, as the worker does) and the
    evaluation of the validation and test splits, shared among the workers."""
    train, val, test = split_images(spec)
    steps = max(1, train // spec.train.batch_size)
    seconds = steps * step.train_step(spec.train.batch_size / workers)
    for images in (val, test):
        share = math.ceil(images / workers)
        full_batches, rest = divmod(share, EVAL_BATCH)
        seconds += full_batches * step.eval_step(EVAL_BATCH) + (step.eval_step(rest) if rest else 0)
    return seconds


def split_images(spec: TrialSpec) -> tuple[int, int, int]:
    """(training, validation, test) images per epoch."""
    t = spec.train
    sizes = datasets.info(t.dataset).images
    if sizes is None:
        known = [name for name, info in datasets.DATASETS.items() if info.images]
        raise EstimateError(f"dataset {t.dataset!r} has no fixed size to estimate from; "
                            f"allowed: {', '.join(known)}")
    train_total, test_total = sizes
    train, test = t.train_size or train_total, t.test_size or test_total
    if t.dataset != "synthetic":   # the synthetic set is generated at any size
        train, test = min(train, train_total), min(test, test_total)
    val = round(train * t.val_fraction)   # stratified per class, so within a few images
    return train - val, val, test


# --- what a step time depends on ---

def measure_key(spec: TrialSpec) -> tuple[str, str]:
    """What a step time depends on besides the device: the model and how it is trained."""
    t = spec.train
    return spec.model, json.dumps({"options": spec.model_options, "optimizer": t.optimizer,
                                   "amp": t.amp, "channels_last": t.channels_last,
                                   "classes": _classes(spec)}, sort_keys=True)


def _classes(spec: TrialSpec) -> int:
    from raysweep.datasets.readers import info

    return info(spec.train.dataset).classes or spec.train.synthetic_classes


def _through(xs: tuple[int, int], ys: tuple[float, float], x: float) -> float:
    """y at x on the line through the two points: a fixed part plus a part per image.
    A negative fixed part or slope (measurement noise) falls back to proportional
    scaling from the larger point."""
    (x1, x2), (y1, y2) = xs, ys
    slope = (y2 - y1) / (x2 - x1) if x2 != x1 else 0.0
    fixed = y1 - slope * x1
    if slope <= 0 or fixed < 0:
        slope, fixed = y2 / x2, 0.0
    return fixed + slope * x


# --- the cache ---

def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "CPU"


def cache_key(spec: TrialSpec, device: str, host: str, threads: int) -> str:
    from models.facts import zoo_fingerprint
    from raysweep.store.provenance import package_version

    model, how = measure_key(spec)
    return "|".join((host, device, f"{threads}t", model, how, zoo_fingerprint(),
                     f"torch {package_version('torch')}"))


def read_cache(path: Path = CACHE_FILE) -> dict[str, StepTime]:
    """The cached measurements; an unreadable or other-version file counts as empty
    (it is only a cache: the steps are measured again)."""
    try:
        payload = json.loads(Path(path).expanduser().read_text())
        if payload.get("version") != CACHE_VERSION:
            return {}
        return {key: _step_time(entry) for key, entry in payload["step_times"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_cache(entries: Mapping[str, StepTime], path: Path = CACHE_FILE) -> None:
    """Merge `entries` into the cache file (re-read first: another process may have
    added measurements), written atomically."""
    from raysweep.store.storage import atomic_write_text

    merged = {**read_cache(path), **entries}
    body = {key: {k: v for k, v in asdict(st).items() if k != "cached"}
            for key, st in sorted(merged.items())}
    atomic_write_text(Path(path).expanduser(),
                      json.dumps({"version": CACHE_VERSION, "step_times": body}, indent=1))


def _step_time(entry: dict) -> StepTime:
    return StepTime(**{**entry, "batches": tuple(entry["batches"]),
                       "train_s": tuple(entry["train_s"]), "eval_s": tuple(entry["eval_s"]),
                       "cached": True})


# --- the whole estimate ---

def estimate(specs: list[TrialSpec], asha: AshaConfig,
             resources: TrialResources | Mapping[str, TrialResources], concurrent: int = 1,
             gpus: int | None = None, cache_file: Path = CACHE_FILE,
             on_measure: Callable[[str], None] | None = None, probe: int | None = None
             ) -> Estimate:
    """Measure (or read from the cache) a step time per distinct model and training
    setup, then `estimate_from`. Without `gpus`: for this machine (its GPU when the
    trials use GPUs and there is one, else this CPU) at `concurrent` trials at once.
    With `gpus=N`: for N GPUs of this machine's kind, or of a kind measured earlier and
    cached when this machine has none. `on_measure(label)` is called before each new
    measurement (they take seconds each); `probe` overrides the probe batch."""
    if gpus is not None and gpus < 1:
        raise EstimateError(f"gpus={gpus}: allowed: a GPU count >= 1")
    uses_gpu = gpus is not None or any(
        _resources(resources, s).use_gpu for s in specs)
    import torch

    from raysweep.estimate.measure import device_name

    cache = read_cache(cache_file)
    if uses_gpu and not torch.cuda.is_available():
        if gpus is None:
            raise EstimateError("the trials use GPUs (gpus_per_worker > 0) but this machine has "
                                "none; allowed: gpus_per_worker: 0, gpus=N for a GPU kind "
                                "measured earlier, or --gpu-type NAME (a reference profile)")
        return _from_cached_gpu(specs, asha, resources, gpus, cache, cache_file)
    device = torch.device("cuda", 0) if uses_gpu else torch.device("cpu")
    threads = 1 if uses_gpu else max(1, int(_resources(resources, specs[0]).cpus_per_worker))
    times, new = _measure_all(specs, device, threads, cache, on_measure, probe)
    if new:
        write_cache(new, cache_file)
    name = device_name(device)
    target = (f"{gpus} × {name}" if gpus else f"this machine's {name}") if uses_gpu else \
        f"this CPU ({name}, {threads} thread{'s' if threads > 1 else ''} per worker)"
    return estimate_from(specs, times, asha, resources, concurrent, gpus, target)


def _measure_all(specs, device, threads, cache, on_measure, probe):
    from raysweep.estimate.measure import device_name, measure_step_time

    host, name = socket.gethostname(), device_name(device)
    times, new = {}, {}
    for spec in specs:
        if measure_key(spec) in times:
            continue
        key = cache_key(spec, name, host, threads)
        if key not in cache:
            if on_measure:
                on_measure(f"{spec.model} {spec.model_options or ''}".strip())
            new[key] = cache[key] = measure_step_time(spec, device, threads, probe)
        times[measure_key(spec)] = cache[key]
    return times, new


def _from_cached_gpu(specs, asha, resources, gpus, cache, cache_file) -> Estimate:
    """An estimate for `gpus` GPUs from GPU measurements cached earlier (this machine has
    none): the first GPU kind, by name, that has every model measured."""
    found = _cached_gpu_estimate(specs, asha, resources, gpus, cache, lambda name: True)
    if found:
        return found
    missing = ", ".join(sorted({s.model for s in specs}))
    raise EstimateError(f"gpus={gpus}: this machine has no GPU and {cache_file} holds no GPU "
                        f"step time for every model ({missing}); allowed: no gpus (an estimate "
                        f"for this CPU), --gpu-type NAME (a reference profile: "
                        f"{', '.join(sorted(profiles()))}), or estimate once on a GPU "
                        f"machine and copy its cache")


def estimate_on_profile(specs: list[TrialSpec], asha: AshaConfig,
                        resources: Mapping[str, TrialResources], gpus: int,
                        prof: AcceleratorProfile) -> Estimate:
    """For `gpus` GPUs of a profile's kind, from its step times (nothing is measured, so
    this machine needs no GPU), packed trials at the profile's packing speed; `unpacked`
    is the same study with every trial on a GPU of its own."""
    if gpus < 1:
        raise EstimateError(f"gpus={gpus}: allowed: a GPU count >= 1")
    distinct = {measure_key(s): s for s in specs}
    times = {key: _profile_step_time(s, prof) for key, s in distinct.items()}
    target = f"{gpus} × {prof.device} (the {prof.name} profile)"
    est = estimate_from(specs, times, asha, resources, 1, gpus, target,
                        speed=lambda r: prof.packed_speed(r.gpus_per_worker))
    alone = {k: replace(r, gpus_per_worker=1.0) for k, r in resources.items()}
    unpacked = estimate_from(specs, times, asha, alone, 1, gpus, target)
    return replace(est, profile=prof, unpacked=unpacked.asha or unpacked.full)


def _profile_step_time(spec: TrialSpec, prof: AcceleratorProfile) -> StepTime:
    """A StepTime the profile's line gives for `spec`'s model (two points of a line)."""
    from models import model_facts

    flops = model_facts(spec.model, num_classes=_classes(spec), **spec.model_options).flops
    batches = (PROBE_GPU // 2, PROBE_GPU)
    train = tuple(prof.train_step(b, flops) for b in batches)
    return StepTime(spec.model, dict(spec.model_options), prof.device, "cuda",
                    f"the {prof.name} profile", 1, batches, train,
                    tuple(t * EVAL_SHARE for t in train), 0, prof.measured_on, 0.0)


def known_estimate(specs: list[TrialSpec], asha: AshaConfig,
                   resources: Mapping[str, TrialResources], concurrent: int, gpus: int = 0,
                   accelerator: str | None = None, cache_file: Path = CACHE_FILE
                   ) -> Estimate | None:
    """The estimate from what is known without measuring (which takes seconds per model
    and imports torch): for trials on CPUs, step times an earlier `show` cached on this
    machine; for trials on `gpus` GPUs of Ray's `accelerator` type ("H100"), step times
    cached for that kind on any machine, else its reference profile. None when a model
    has no step time."""
    cache = read_cache(cache_file)
    if not any(_resources(resources, s).use_gpu for s in specs):
        name = cpu_name()
        threads = max(1, int(_resources(resources, specs[0]).cpus_per_worker))
        times = _cached_times(specs, cache, name, socket.gethostname(), threads)
        if times is None:
            return None
        return estimate_from(specs, times, asha, resources, concurrent, None,
                             f"this CPU ({name}, step times cached by an earlier show)")
    if not accelerator or gpus < 1:
        return None
    found = _cached_gpu_estimate(specs, asha, resources, gpus, cache,
                                 lambda name: accelerator in name)
    prof = next((p for p in profiles().values() if p.accelerator_type == accelerator), None)
    if found or not prof:
        return found
    return estimate_on_profile(specs, asha, resources, gpus, prof)


def _cached_gpu_estimate(specs, asha, resources, gpus: int, cache: Mapping[str, StepTime],
                         kind: Callable[[str], bool]) -> Estimate | None:
    """From the first cached GPU kind, by name, for which `kind(name)` holds and every
    model was measured; None when there is none."""
    kinds = sorted({(st.host, st.device) for st in cache.values() if st.device_type == "cuda"},
                   key=lambda hd: hd[1])
    for host, name in (hd for hd in kinds if kind(hd[1])):
        times = _cached_times(specs, cache, name, host, 1)
        if times:
            return estimate_from(specs, times, asha, resources, 1, gpus,
                                 f"{gpus} × {name} (measured on {host}, cached)")
    return None


def _cached_times(specs: list[TrialSpec], cache: Mapping[str, StepTime], device: str,
                  host: str, threads: int) -> dict[tuple[str, str], StepTime] | None:
    """Every spec's step time as `host` measured it on `device`, by `measure_key`; None
    when the cache lacks one."""
    distinct = {measure_key(s): s for s in specs}
    times = {key: cache.get(cache_key(s, device, host, threads)) for key, s in distinct.items()}
    return times if all(times.values()) else None


def over_budget(est: Estimate) -> str | None:
    """Why a run of this estimate should be confirmed first (at least ASK_GPU_HOURS
    GPU-hours or ASK_WALL_HOURS hours of wall time, ASHA's savings counted), or None."""
    cost = est.asha or est.full
    if cost.gpu_hours and cost.gpu_hours >= ASK_GPU_HOURS:
        return f"{_hours(cost.gpu_hours)} GPU-hours (asked from {ASK_GPU_HOURS:g})"
    if cost.wall_hours >= ASK_WALL_HOURS:
        return f"~{_hours(cost.wall_hours)} h of wall time (asked from {ASK_WALL_HOURS:g})"
    return None


def _resources(resources, spec: TrialSpec) -> TrialResources:
    return resources if isinstance(resources, TrialResources) else resources[spec.key]


# --- the lines `raysweep show` prints ---

def format_estimate(est: Estimate, models_shown: int = 3) -> list[str]:
    """2–4 plain lines: the estimate, ASHA's, how it was measured and what it leaves out."""
    lines = [f"estimate for {est.target}: {_cost(est.full)} ({est.concurrency} ~"
             f"{_hours(est.full.wall_hours)} h)."]
    if est.asha:
        s = est.asha_settings
        lines.append(f"with ASHA (grace {s.grace_period}, reduction {s.reduction_factor}; "
                     f"Ray's cutoff at each rung, trials ranked at random): "
                     f"{_cost(est.asha)} (~{_hours(est.asha.wall_hours)} h).")
    if est.profile:
        lines += _profile_lines(est)
    else:
        lines.append(_measured_line(est, models_shown))
        lines.append("counts training steps and evaluation only: no start-up, data loading "
                     "or DDP traffic; packed trials at the speed of one alone.")
    return lines


def _profile_lines(est: Estimate) -> list[str]:
    p = est.profile
    fixed, per_image = p.line
    batches = sorted(p.train_images_per_s)
    cost = est.asha or est.full
    if est.unpacked and est.unpacked.gpu_hours > cost.gpu_hours:
        measured = ", ".join(f"{n} to a GPU at {a:g}x" for n, a in
                             sorted(p.packed_aggregate.items()) if n > 1)
        packing = (f"packing (gpus_per_worker: auto; {measured} one trial's speed, as "
                   f"measured): {_hours(cost.gpu_hours)} GPU-hours against "
                   f"{_hours(est.unpacked.gpu_hours)} with every trial on a GPU of its own")
    else:
        packing = "packing: no trial here shares a GPU (gpus_per_worker), so it saves nothing"
    return [
        f"from the {p.name} profile ({p.device}, torch {p.torch}, measured {p.measured_on}: "
        f"{', '.join(p.sources)}): {p.model} {fixed * 1e3:.1f} ms per step + "
        f"{per_image * 1e6:.2f} µs per image at {batches[0]}-{batches[-1]} images/worker "
        f"({p.precision}); other models scaled by FLOPs at its {p.effective_tflops:.0f} "
        f"TFLOP/s ({p.effective_tflops / p.peak_tflops:.0%} of the {p.peak_tflops:g} TFLOP/s "
        f"bf16 peak): a floor for deeper networks (more kernel launches per step), a "
        f"ceiling for large models (which use a GPU better).",
        packing + "; fused arrays (resources.fuse) not estimated: not yet measured on a GPU.",
        "counts training steps and evaluation only: no start-up, data loading or DDP "
        "traffic.",
    ]


def _cost(cost: Cost) -> str:
    gpu = f", {_hours(cost.gpu_hours)} GPU-hours" if cost.gpu_hours else ""
    return (f"{cost.trial_epochs:,.0f} trial-epochs ≈ {_hours(cost.trial_hours)} "
            f"trial-hours{gpu}")


def _measured_line(est: Estimate, models_shown: int) -> str:
    times = est.step_times
    shown = "; ".join(f"{st.model}{''.join(f' {k}={v}' for k, v in sorted(st.options.items()))}"
                      f" {st.train_s[1]:.3g} s/step at {st.batches[1]} images/worker, "
                      f"{st.train_s[0]:.3g} at {st.batches[0]}" for st in times[:models_shown])
    more = f"; {len(times) - models_shown} more models" if len(times) > models_shown else ""
    cached = [st.measured_at[:10] for st in times if st.cached]
    when = (f"cached {min(cached)}" if len(cached) == len(times) else "measured now"
            if not cached else f"measured now and cached {min(cached)}")
    busy = max(st.load for st in times)
    busy = f"; the machine was busy, load up to {busy:.1f} per core" if busy > 1 else ""
    return (f"measured: {shown}{more} ({when}; median of >= {min(st.timed_steps for st in times)}"
            f" timed steps after {WARMUP_STEPS} warm-up{busy}); step time = a fixed part + a "
            f"part per image, through the two probes, taken at "
            f"{', '.join(map(str, est.scaled_to))} images/worker.")


def _hours(h: float) -> str:
    return f"{h:,.1f}" if h >= 0.95 else f"{h:.2g}"
