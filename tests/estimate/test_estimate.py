"""The cost estimate before a study runs (raysweep.estimate): ASHA's expected savings,
the arithmetic on injected step times, the step-time cache and the lines `show` prints."""
from __future__ import annotations

import random

import pytest
import torch

from raysweep.decide.rungs import milestones
from raysweep.study.sections import AshaConfig
from raysweep.estimate.cost import (EstimateError, StepTime, asha_expected_epochs,
                               epoch_seconds, estimate, estimate_from,
                               estimate_on_profile, format_estimate, measure_key,
                               read_cache, write_cache)
from raysweep.estimate.profiles import profile
from raysweep.core.trial import TrialResources
from support.factories import spec

CIFAR = dict(dataset="cifar100", train_size=None, test_size=None, synthetic_classes=None,
             val_fraction=0.1, batch_size=128, epochs=10)
ONE_CPU = TrialResources(workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0)
NO_ASHA = AshaConfig(False, 1, 2)


def test_asha_large_study_limit_by_hand():
    # 100 epochs, grace 1, η 4: rungs 1, 4, 16, 64. All trials run epoch 1, 1/4 run
    # epochs 2-4, 1/16 epochs 5-16, 1/64 epochs 17-64, 1/256 epochs 65-100.
    assert milestones(100, 1, 4) == [1, 4, 16, 64]
    by_hand = 1 + 3 / 4 + 12 / 16 + 48 / 64 + 36 / 256
    assert asha_expected_epochs(100, 1, 4) == pytest.approx(by_hand)
    assert milestones(64, 1, 4) == [1, 4, 16]     # a rung at the last epoch stops nothing


def test_asha_small_study_by_hand():
    # 2 trials, 3 epochs, grace 1, η 2 (rungs 1, 2). At a rung the first arrival always
    # continues (no cutoff yet); the second continues iff it beats the first: p = 1/2.
    # Epoch 1: 2 trials. Past rung 1: 1 + 1/2 = 1.5 expected. Past rung 2: with one
    # arrival 1, with two 1.5, so 0.5 × 1 + 0.5 × 1.5 = 1.25. Sum: 2 + 1.5 + 1.25 = 4.75.
    assert asha_expected_epochs(3, 1, 2, trials=2) == pytest.approx(4.75 / 2)
    assert asha_expected_epochs(3, 1, 2, trials=1) == 3


def test_asha_expectation_matches_rays_scheduler_on_random_results():
    """Ray's own ASHAScheduler (as the driver configures it), fed random results in a
    random order at each rung: its mean epochs per trial is the exact expectation."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    n, epochs, grace, eta, runs = 6, 20, 1, 2, 400
    rng, total = random.Random(0), 0.0
    for _ in range(runs):
        scheduler = ASHAScheduler(time_attr="epoch", metric="top1", mode="max",
                                  max_t=epochs + 1, grace_period=grace, reduction_factor=eta)
        alive = [Trial("__fake", stub=True) for _ in range(n)]
        for trial in alive:
            scheduler.on_trial_add(None, trial)
        ran = {trial: epochs for trial in alive}
        for rung in milestones(epochs, grace, eta):
            rng.shuffle(alive)
            stopped = {t for t in alive if scheduler.on_trial_result(
                None, t, {"epoch": rung, "top1": rng.random()}) == TrialScheduler.STOP}
            ran.update({t: rung for t in stopped})
            alive = [t for t in alive if t not in stopped]
        total += sum(ran.values()) / n
    exact = asha_expected_epochs(epochs, grace, eta, trials=n)
    assert total / runs == pytest.approx(exact, rel=0.05)
    assert exact > 1.5 * asha_expected_epochs(epochs, grace, eta)  # why n matters


def step_time(model="resnet_20", device="Test CPU", device_type="cpu", **kw) -> StepTime:
    """A step-time table entry: train 0.5 s at 64, 0.9 s at 128 images (0.1 s fixed +
    6.25 ms per image); eval 0.2 s at 64, 0.3 s at 128 (0.1 s + 1.5625 ms per image)."""
    values = dict(model=model, options={}, device=device, device_type=device_type,
                  host="testhost", threads=1, batches=(64, 128), train_s=(0.5, 0.9),
                  eval_s=(0.2, 0.3), timed_steps=5, measured_at="2026-11-24T00:00:00+00:00",
                  load=0.5)
    return StepTime(**{**values, **kw})


def test_epoch_seconds_from_a_fixed_step_time_table():
    trial = spec(**CIFAR)
    # 45,000 training images (5,000 held out) / 128 = 351 steps × 0.9 s; validation
    # 5,000 = 19 × 256 + 136, test 10,000 = 39 × 256 + 16, eval(256) = 0.5 s.
    val = 19 * 0.5 + (0.1 + 136 * 0.0015625)
    test = 39 * 0.5 + (0.1 + 16 * 0.0015625)
    assert epoch_seconds(trial, step_time(), 1) == pytest.approx(351 * 0.9 + val + test)
    # two workers: 64 images each per step; each evaluates half of every split:
    # 2,500 = 9 × 256 + 196 validation and 5,000 = 19 × 256 + 136 test images
    two = 351 * 0.5 + 9 * 0.5 + (0.1 + 196 * 0.0015625) + 19 * 0.5 + (0.1 + 136 * 0.0015625)
    assert epoch_seconds(trial, step_time(), 2) == pytest.approx(two)


def test_estimate_arithmetic_on_a_fixed_step_time_table():
    specs = [spec(seed=s, **CIFAR) for s in range(4)]
    table = {measure_key(specs[0]): step_time()}
    epoch = epoch_seconds(specs[0], table[measure_key(specs[0])], 1)

    cpu = estimate_from(specs, table, NO_ASHA, ONE_CPU, concurrent=2, target="this CPU")
    assert (cpu.trials, cpu.full.trial_epochs, cpu.asha) == (4, 40, None)
    assert cpu.full.trial_hours == pytest.approx(40 * epoch / 3600)
    assert cpu.full.wall_hours == pytest.approx(20 * epoch / 3600)   # 2 at once
    assert cpu.full.gpu_hours is None

    quarter = TrialResources(1, 1.0, 0.25)
    gpus = estimate_from(specs, table, AshaConfig(True, 1, 2), quarter, 1, gpus=8)
    assert gpus.full.gpu_hours == pytest.approx(0.25 * 40 * epoch / 3600)
    # 4 quarter-GPU trials fit on one of the 8 GPUs: one trial's budget bounds the wall time
    assert gpus.full.wall_hours == pytest.approx(10 * epoch / 3600)
    expected = asha_expected_epochs(10, 1, 2, trials=4)
    assert gpus.asha.trial_epochs == pytest.approx(4 * expected)
    assert gpus.asha.trial_hours == pytest.approx(4 * expected * epoch / 3600)
    assert gpus.asha.trial_hours < gpus.full.trial_hours


def test_formatter_names_the_estimate_and_its_measurement():
    specs = [spec(seed=s, **CIFAR) for s in range(3)]
    est = estimate_from(specs, {measure_key(specs[0]): step_time(cached=True)},
                        AshaConfig(True, 1, 4), ONE_CPU, 3, target="this CPU (Test CPU)")
    lines = format_estimate(est)
    assert 2 <= len(lines) <= 4
    assert lines[0].startswith("estimate for this CPU (Test CPU): 30 trial-epochs ≈ ")
    assert "(3 at once ~" in lines[0]
    assert lines[1].startswith("with ASHA (grace 1, reduction 4")
    assert measured_line(est) == lines[2]
    assert lines[2].startswith("measured: resnet_20 0.9 s/step at 128 images/worker, 0.5 at 64 "
                               "(cached 2026-11-24; median of >= 5 timed steps")
    assert "busy" not in lines[2]
    busy = estimate_from(specs, {measure_key(specs[0]): step_time(load=3.0)}, NO_ASHA, ONE_CPU, 3)
    assert "measured now; median of >= 5 timed steps after 2 warm-up; the machine was busy, " \
           "load up to 3.0 per core)" in measured_line(busy)


def measured_line(est) -> str:
    return next(line for line in format_estimate(est) if line.startswith("measured: "))


def test_step_times_are_measured_once_then_read_from_the_cache(tmp_path):
    cache = tmp_path / "step_times.json"
    cache.write_text("{not json")                  # a damaged cache is only a cache
    specs = [spec(seed=s, **CIFAR) for s in range(2)]
    measured = []
    first = estimate(specs, NO_ASHA, ONE_CPU, cache_file=cache, on_measure=measured.append,
                     probe=4)
    assert measured == ["resnet_20"]               # two seeds, one measurement
    (stored,) = read_cache(cache).values()
    assert stored.batches == (2, 4) and stored.cached and min(stored.train_s) > 0
    again = estimate(specs, NO_ASHA, ONE_CPU, cache_file=cache, on_measure=measured.append)
    assert measured == ["resnet_20"]               # nothing measured the second time
    assert again.full == first.full and again.step_times[0].cached
    assert "(cached " in measured_line(again) and "(measured now" in measured_line(first)
    assert again.target.startswith("this CPU (")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: it would measure it")
def test_named_gpu_count_on_a_cpu_machine_needs_a_cached_gpu_measurement(tmp_path):
    cache = tmp_path / "step_times.json"
    specs = [spec(**CIFAR)]
    with pytest.raises(EstimateError, match=r"gpus=8: this machine has no GPU .*allowed"):
        estimate(specs, NO_ASHA, ONE_CPU, gpus=8, cache_file=cache)
    from raysweep.estimate.cost import cache_key

    gpu = step_time(device="NVIDIA H100 80GB HBM3", device_type="cuda", host="gpuhost")
    write_cache({cache_key(specs[0], gpu.device, "gpuhost", 1): gpu}, cache)
    est = estimate(specs, NO_ASHA, ONE_CPU, gpus=8, cache_file=cache)
    assert est.target == "8 × NVIDIA H100 80GB HBM3 (measured on gpuhost, cached)"
    assert est.full.gpu_hours == pytest.approx(est.full.trial_hours)   # 1 GPU per trial


def test_unknown_dataset_size_is_one_clear_error():
    trial = spec(**{**CIFAR, "dataset": "imagefolder"})
    with pytest.raises(EstimateError, match="dataset 'imagefolder' has no fixed size.*allowed: "
                                            "cifar100, cifar10, fashion_mnist, synthetic"):
        epoch_seconds(trial, step_time(), 1)


# --- reference accelerator profiles (no GPU needed) ---

def test_a_profile_scales_the_reference_by_flops_and_packs_at_its_measured_speed():
    h100 = profile("h100")
    fixed, per_image = h100.line
    # The line goes through the measured points within their scatter (launch-bound: the
    # 512-image step was measured 1.2 ms slower than the 1024-image one).
    for batch, rate in h100.train_images_per_s.items():
        assert h100.train_step(batch, h100.reference_flops) == pytest.approx(batch / rate,
                                                                             rel=0.15)
    assert 5e-3 < fixed < 20e-3 and per_image > 0
    # Twice the FLOPs: twice the per-image part, the same fixed part.
    ref = h100.reference_flops
    assert h100.train_step(256, 2 * ref) - h100.train_step(256, ref) == pytest.approx(
        256 * per_image)
    assert h100.effective_tflops == pytest.approx(3 * ref / per_image / 1e12)
    # Packed: 4 to a GPU at the measured aggregate; never faster than alone.
    assert h100.packed_speed(0.25) == pytest.approx(3.21 / 4)
    assert h100.packed_speed(0.5) == 1.0 == h100.packed_speed(1.0) == h100.packed_speed(0)
    with pytest.raises(EstimateError, match=r"--gpu-type 'tpu' has no profile; allowed: h100"):
        profile("tpu")


def test_an_estimate_on_a_profile_needs_no_gpu_and_says_what_packing_saves():
    specs = [spec(seed=s, **CIFAR) for s in range(8)]
    quarter = {s.key: TrialResources(1, 4.0, 0.25) for s in specs}
    h100 = profile("h100")
    est = estimate_on_profile(specs, NO_ASHA, quarter, 2, h100)
    [st] = est.step_times
    alone_epoch = epoch_seconds(specs[0], st, 1)
    packed_epoch = alone_epoch / h100.packed_speed(0.25)
    assert est.full.trial_hours == pytest.approx(8 * 10 * packed_epoch / 3600)
    assert est.full.gpu_hours == pytest.approx(0.25 * 8 * 10 * packed_epoch / 3600)
    assert est.unpacked.gpu_hours == pytest.approx(8 * 10 * alone_epoch / 3600)
    assert est.full.gpu_hours < est.unpacked.gpu_hours
    lines = format_estimate(est)
    assert lines[0].startswith("estimate for 2 × NVIDIA H100 80GB HBM3 (the h100 profile)")
    assert "measured 2026-11-23" in lines[1] and "scaled by FLOPs" in lines[1]
    assert lines[2].startswith("packing (gpus_per_worker: auto;") and "against" in lines[2]


def test_show_estimates_a_study_for_gpus_this_machine_does_not_have(capsys):
    """`show comparison --gpus 8 --gpu-type h100` on a machine without a GPU (as CI is):
    GPU-hours, wall time on the 8 GPUs, ASHA's saving and packing's."""
    from raysweep import cli

    assert cli.main(["show", "comparison", "--gpus", "8", "--gpu-type", "h100"]) == 0
    out = capsys.readouterr().out.splitlines()
    [head] = [ln for ln in out if ln.startswith("estimate for 8 × NVIDIA H100")]
    assert "GPU-hours (on 8 GPUs ~" in head
    assert any(ln.startswith("with ASHA (") and "GPU-hours" in ln for ln in out)
    assert any(ln.startswith("packing (gpus_per_worker: auto;") for ln in out)
    assert cli.main(["show", "comparison", "--gpu-type", "v100"]) == 2
    assert capsys.readouterr().err.strip().endswith("has no profile; allowed: h100")
