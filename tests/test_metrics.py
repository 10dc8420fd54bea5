"""Per-trial metrics reach Ray's Prometheus endpoint, scraped as Prometheus would."""
from __future__ import annotations

import time
import urllib.request

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from raysweep import metrics
from raysweep.progress import trial_label
from factories import record, spec


def _scrape() -> dict[str, list]:
    """Every sample of this node's metrics endpoint, by metric name."""
    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


@pytest.mark.slow
def test_a_trial_s_metrics_reach_the_prometheus_endpoint_with_its_label(ray_local):
    trial = record(spec(seed=2, group="demo", variant="deeper", model="resnet_32",
                        study=f"metrics{time.time_ns()}"), status="running",
                   top1=[40.0, 47.5], val_top1=[41.0, 48.25])
    assert metrics.observe(trial)
    want = {"study": trial.study, "trial": "demo.deeper-s2", "key": trial.key}
    assert trial_label(trial) == want["trial"]
    # Ray exports every metrics_report_interval_ms (10 s by default).
    deadline, seen = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        seen = {name: s.value for name, samples in _scrape().items() for s in samples
                if name.startswith("ray_raysweep_trial_")
                and {k: s.labels.get(k) for k in want} == want}
        if len(seen) == len(metrics.GAUGES):
            break
        time.sleep(0.5)   # polling interval of the scrape, not a synchronisation
    assert seen == {"ray_raysweep_trial_epoch": 2.0, "ray_raysweep_trial_val_top1": 48.25,
                    "ray_raysweep_trial_test_top1": 47.5,
                    "ray_raysweep_trial_images_per_s": 1000.0}
