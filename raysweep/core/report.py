"""What a trial's process tells the driver after each epoch: one `Report`, the contract
between every producer (the train loop, a fused array's members, a replayed search
sample) and its readers on the driver (the record writer, ASHA's rungs).

    metrics = encode(Report(result))                        # each epoch
    metrics = encode(Report(result, Launched(...)))         # the first epoch of a launch
    ray.tune.report(metrics)        # on the worker
    report = decode(result)         # on the driver, from Tune's result dict

It travels in Tune's result dict: the scalars Tune's scheduler and loggers read (`epoch`,
`val_top1`, ...; None left out) side by side with the full `EpochResult` as JSON; the
first report of a launch adds the model's size, the trial's segments so far and the
epochs before this one (from its checkpoint: a driver that died never recorded them).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from raysweep.core.trial import EpochResult, Segment

RESULT, SEGMENTS, HISTORY = "raysweep_result", "raysweep_segments", "raysweep_history"


@dataclass(frozen=True)
class Launched:
    """What the first report of a launch adds: the segments so far (this launch's last),
    the epochs trained before the reported one, and the model's size."""
    segments: tuple[Segment, ...]
    history: tuple[EpochResult, ...]
    params: int | None
    flops: int | None


@dataclass(frozen=True)
class Report:
    result: EpochResult
    launched: Launched | None = None   # only on the first report of a launch


def first_report(result: EpochResult, segments, history, params: int | None,
                 flops: int | None) -> Report:
    """The first report of a launch; `history` may hold more than the epochs before
    `result` (a finished trial reporting its last epoch again): only those are sent."""
    before = tuple(h for h in history if h.epoch < result.epoch)
    return Report(result, Launched(tuple(segments), before, params, flops))


def encode(report: Report) -> dict:
    metrics = {k: v for k, v in dataclasses.asdict(report.result).items() if v is not None}
    if report.launched is not None:
        launched = report.launched
        metrics.update({"params": launched.params, "flops": launched.flops,
                        SEGMENTS: json.dumps([dataclasses.asdict(s) for s in launched.segments]),
                        HISTORY: json.dumps([dataclasses.asdict(h) for h in launched.history])})
    metrics[RESULT] = json.dumps(dataclasses.asdict(report.result))
    return metrics


def decode(metrics: dict) -> Report | None:
    """The Report in a Tune result dict, or None for a result no raysweep trial sent."""
    if RESULT not in metrics:
        return None
    result = EpochResult(**json.loads(metrics[RESULT]))
    if SEGMENTS not in metrics:
        return Report(result)
    return Report(result, Launched(
        tuple(Segment(**s) for s in json.loads(metrics[SEGMENTS])),
        tuple(EpochResult(**h) for h in json.loads(metrics.get(HISTORY, "[]"))),
        metrics.get("params"), metrics.get("flops")))
