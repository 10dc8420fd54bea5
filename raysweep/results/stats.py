"""Numbers of one trial record, and how trials are pooled over seeds.

Everything here reads record dicts (see `raysweep.records`) and returns plain floats;
a number a record does not hold comes back as NaN, which the exporters print as an
empty cell, so nothing is ever estimated.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable

import numpy as np
from scipy import stats as sps

from raysweep.study import NOT_IDENTITY  # the keys `study.trial_key` leaves out

NAN = float("nan")
ALPHA = 0.05


def num(value: Any) -> float:
    """A record's number as a float; missing, non-numeric or non-finite → NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return NAN
    return float(value) if math.isfinite(value) else NAN


# --- one trial ---

def final(record: dict, metric: str = "top1") -> float:
    """The metric of the last finished epoch (not the best one: picking the best epoch by
    the test accuracy it reports would select on the test set)."""
    return num(record["history"][-1].get(metric)) if record["history"] else NAN


def at_epoch(record: dict, epoch: int | None, metric: str = "top1") -> float:
    for entry in record["history"]:
        if entry.get("epoch") == epoch:
            return num(entry.get(metric))
    return NAN


def train_seconds(record: dict) -> float:
    """Wall time of the finished epochs (training plus evaluation; worker start-up excluded)."""
    if not record["history"]:
        return NAN
    return float(sum(num(h.get("epoch_seconds")) for h in record["history"]))


def gpu_hours(record: dict) -> float:
    """GPU-hours of the trial; NaN on a CPU run (no GPU was used, so there is no GPU cost)."""
    gpus = num(record.get("gpus_per_worker")) * num(record.get("workers"))
    return train_seconds(record) * gpus / 3600 if gpus > 0 else NAN


def images_per_s(record: dict) -> float:
    """Mean training throughput over epochs, all workers together."""
    values = [num(h.get("images_per_s")) for h in record["history"]]
    return float(np.nanmean(values)) if any(not math.isnan(v) for v in values) else NAN


def params_m(record: dict) -> float:
    return num(record.get("params")) / 1e6


def flops_m(record: dict) -> float:
    return num(record.get("flops")) / 1e6


def status_text(record: dict) -> str:
    status, at = record["status"], record.get("stopped_at_epoch")
    if status == "stopped":
        return f"stopped by ASHA at epoch {at}"
    if status == "diverged":
        return f"diverged at epoch {at}"
    return status


def last_epoch(record: dict) -> int | None:
    return record["history"][-1].get("epoch") if record["history"] else None


def equal_budget_epoch(records: Iterable[dict]) -> int | None:
    """The largest epoch every trial with a history reached (trials that never finished an
    epoch are left out, or the answer would always be 0)."""
    reached = [e for e in map(last_epoch, records) if e is not None]
    return min(reached) if reached else None


# --- pooling over seeds ---

def arm_id(record: dict) -> str:
    """What a trial trains, seed aside: model, options and the resolved training config."""
    config = {k: v for k, v in (record.get("config") or {}).items() if k not in NOT_IDENTITY}
    return json.dumps({"model": record["model"], "options": record.get("model_options") or {},
                       "config": config}, sort_keys=True, default=str)


def per_seed(records: list[dict], value: Callable[[dict], float]) -> list[float]:
    """One value per seed. A seed trained more than once with the same config (the same
    baseline in two ablation groups) is averaged first, so it counts once."""
    by_seed: dict[Any, list[float]] = defaultdict(list)
    for r in records:
        v = value(r)
        if not math.isnan(v):
            by_seed[r.get("seed")].append(v)
    return [float(np.mean(vs)) for _, vs in sorted(by_seed.items(), key=lambda kv: str(kv[0]))]


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n); std is NaN below 2 values, mean NaN at 0."""
    n = len(values)
    mean = float(np.mean(values)) if n else NAN
    std = float(np.std(values, ddof=1)) if n >= 2 else NAN
    return mean, std, n


def pooled_status(records: list[dict]) -> str:
    counts = Counter(status_text(r) for r in records)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{text} ×{n}" for text, n in sorted(counts.items()))


# --- variant against baseline ---

def welch(variant: list[float], baseline: list[float]) -> dict[str, Any]:
    """Δ of the means, its standard error (Welch's denominator), the p value of Welch's
    t-test, and the verdict: 'within noise' (p ≥ 0.05), 'beyond noise' (p < 0.05),
    'n/a (1 seed)' when either side has fewer than 2 seeds."""
    mv, sv, nv = mean_std(variant)
    mb, sb, nb = mean_std(baseline)
    out = {"delta": mv - mb, "delta_se": NAN, "p": NAN, "verdict": "n/a (1 seed)"}
    if nv < 2 or nb < 2:
        if nv == 0 or nb == 0:
            out["verdict"] = "n/a (no result)"
        return out
    out["delta_se"] = math.sqrt(sv ** 2 / nv + sb ** 2 / nb)
    if out["delta_se"] == 0:
        # Identical values on both sides: Welch's t is undefined.
        out["verdict"] = "within noise" if out["delta"] == 0 else "n/a (no seed variance)"
        return out
    out["p"] = float(sps.ttest_ind(variant, baseline, equal_var=False).pvalue)
    out["verdict"] = "within noise" if out["p"] >= ALPHA else "beyond noise"
    return out
