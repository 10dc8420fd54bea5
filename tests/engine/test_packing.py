"""GPU packing: fractional gpus_per_worker puts several trials on one GPU, and the
resources a trial asks for are the study's (plan_resources is pure: no Ray needed)."""
from __future__ import annotations

import pytest

from raysweep.errors import ResourceError
from raysweep.core.planning import plan_resources, plan_trials
from raysweep.study.parse import parse_study
from raysweep.core.trial import TrialResources


def study(**resources):
    return parse_study({"name": "pack", "models": ["resnet_20"], "resources": resources},
                       "pack.yaml").resources


def test_quarter_gpu_workers_pack_four_trials_on_one_gpu():
    plan = plan_resources(study(gpus_per_worker=0.25), {"CPU": 16, "GPU": 1})
    assert plan.max_concurrent == 4
    assert plan.resources.use_gpu and plan.resources.per_worker() == {"CPU": 1, "GPU": 0.25}


@pytest.mark.parametrize("resources, cluster, concurrent", [
    ({"gpus_per_worker": 0.125}, {"CPU": 16, "GPU": 1}, 8),
    ({"gpus_per_worker": 0.125}, {"CPU": 4, "GPU": 1}, 4),        # CPUs bind first
    ({"gpus_per_worker": 0.25, "workers_per_trial": 2}, {"CPU": 16, "GPU": 1}, 2),
    ({"gpus_per_worker": 0.5}, {"CPU": 16, "GPU": 2}, 4),
    ({"gpus_per_worker": 0.25, "max_concurrent": 3}, {"CPU": 16, "GPU": 1}, 3),
    ({"gpus_per_worker": 0.5, "cpus_per_worker": 3}, {"CPU": 16, "GPU": 4}, 5),
])
def test_packed_concurrency_is_what_both_cpus_and_gpus_hold(resources, cluster, concurrent):
    plan = plan_resources(study(**resources), cluster)
    assert plan.max_concurrent == concurrent
    assert plan.resources.per_worker()["GPU"] == resources["gpus_per_worker"]
    assert plan.resources.per_worker()["CPU"] == resources.get("cpus_per_worker", 1)


def test_auto_is_one_whole_gpu_per_worker_or_none_on_cpu():
    plan = plan_resources(study(), {"CPU": 16, "GPU": 2})
    assert plan.resources == TrialResources(1, 1.0, 1.0) and plan.max_concurrent == 2
    cpu = plan_resources(study(), {"CPU": 2})
    assert not cpu.resources.use_gpu and cpu.resources.per_worker() == {"CPU": 1}
    assert cpu.max_concurrent == 2


def test_a_fraction_beyond_the_cluster_is_refused():
    with pytest.raises(ResourceError, match="GPUs per trial"):
        plan_resources(study(gpus_per_worker=0.75, workers_per_trial=2), {"CPU": 16, "GPU": 1})


def test_auto_packs_small_models_and_gives_big_ones_a_whole_gpu():
    s = parse_study({"name": "pack", "models": ["resnet_20", "resnet_56", "resnet18"]}, "p.yaml")
    trials = s.trials()
    resources, concurrent = plan_trials(s.resources, trials, {"CPU": 16, "GPU": 1})
    shares = {t.model: resources[t.key].gpus_per_worker for t in trials}
    assert shares == {"resnet_20": 0.25, "resnet_56": 0.5, "resnet18": 1.0}
    assert concurrent == 4  # what the smallest share allows; Ray's GPU accounting does the rest


@pytest.mark.parametrize("resources, cluster, share", [
    ({}, {"CPU": 16}, 0.0),                                        # CPU cluster: no GPU
    ({"gpus_per_worker": 0.5}, {"CPU": 16, "GPU": 1}, 0.5),        # the study's own value wins
    ({"workers_per_trial": 2}, {"CPU": 16, "GPU": 2}, 1.0),        # DDP ranks keep whole GPUs
])
def test_auto_share_applies_only_to_one_worker_trials_on_gpus(resources, cluster, share):
    s = parse_study({"name": "pack", "models": ["resnet_20"], "resources": resources,
                     "defaults": {"batch_size": 1024}}, "p.yaml")
    resources, _ = plan_trials(s.resources, s.trials(), cluster)
    assert [r.gpus_per_worker for r in resources.values()] == [share]
