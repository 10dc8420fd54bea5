"""Per-trial metrics on Ray's metrics endpoint, what Prometheus and the dashboard's
Metrics view read:

    metrics.observe(record)     # on the driver, after every record write

Gauges (Ray prefixes them `ray_` on the endpoint), each tagged with `study`, `trial` (the
trial's label, `group.variant-sSEED`) and `key`:

    raysweep_trial_epoch          epochs finished
    raysweep_trial_val_top1       validation top-1 of the last epoch, percent (no series without a validation split)
    raysweep_trial_test_top1      test top-1 of the last epoch, percent
    raysweep_trial_images_per_s   training images per second of the last epoch, all workers

`ray.util.metrics` records through the calling process's Ray core worker, so it works in
any process connected to Ray: the driver after `ray.init` (where the record writer runs),
tasks and actors. Each process exports its values to its node's metrics agent every
`metrics_report_interval_ms` (Ray system config, default 10 000 ms; env
`RAY_metrics_report_interval_ms` before Ray starts), and the agent serves them in
Prometheus text format at `http://<node ip>:<MetricsExportPort>/metrics` (`ray.nodes()`).
A gauge's series lasts while its process lives: finished trials keep their last values
until the driver exits.
"""
from __future__ import annotations

from functools import lru_cache

from raysweep.progress import trial_label
from raysweep.trial import TrialRecord

TAGS = ("study", "trial", "key")
GAUGES = {  # name -> (description, EpochResult field; None: the epoch count)
    "raysweep_trial_epoch": ("epochs finished", None),
    "raysweep_trial_val_top1": ("validation top-1 of the last epoch, percent", "val_top1"),
    "raysweep_trial_test_top1": ("test top-1 of the last epoch, percent", "test_top1"),
    "raysweep_trial_images_per_s": ("training images/s of the last epoch, all workers",
                                    "images_per_s"),
}


@lru_cache(maxsize=None)
def _gauge(name: str):
    from ray.util.metrics import Gauge

    return Gauge(name, description=GAUGES[name][0], tag_keys=TAGS)


def observe(record: TrialRecord) -> bool:
    """Set the trial's gauges from its last epoch; False (nothing recorded) when this
    process is not connected to Ray or the trial has no finished epoch yet."""
    import ray

    if not ray.is_initialized() or not record.history:
        return False
    last = record.history[-1]
    tags = {"study": record.study, "trial": trial_label(record), "key": record.key}
    for name, (_, field) in GAUGES.items():
        value = last.epoch if field is None else getattr(last, field)
        _gauge(name).set(value, tags=tags)  # a None value records nothing
    return True
