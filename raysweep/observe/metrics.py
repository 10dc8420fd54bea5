"""Per-trial metrics on Ray's metrics endpoint, what Prometheus and the dashboard's
Metrics view read:

    exporter = metrics.Exporter()      # on the driver, for one run
    exporter.observe(record)           # after every record write
    exporter.close()                   # when the run ends

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
Ray 2.60's recorder exports a gauge's value once: a series is gone from the endpoint one
interval after its last `set`. A trial's epoch takes minutes, so `Exporter` sets every
trial's latest values again every `REFRESH_SECONDS` while the run lasts: a scrape at any
moment of a run sees every trial, finished ones with their final values.
"""
from __future__ import annotations

import threading
from functools import lru_cache

from raysweep.observe.progress import trial_label
from raysweep.core.trial import TrialRecord

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


REFRESH_SECONDS = 5.0   # shorter than Ray's export interval (10 s by default)


class Exporter:
    """Keeps every observed trial's latest gauges on the endpoint until `close`."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS):
        self.latest: dict[str, TrialRecord] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._refresh, args=(refresh_seconds,),
                                       name="raysweep-metrics", daemon=True)
        self.thread.start()

    def observe(self, record: TrialRecord) -> bool:
        with self.lock:
            self.latest[record.key] = record
        return observe(record)

    def _refresh(self, every: float) -> None:
        while not self.stopped.wait(every):
            with self.lock:
                records = list(self.latest.values())
            for record in records:
                observe(record)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
