"""The engine path for real: Tune + ASHA over TorchTrainer trials on a local Ray (CPU)."""
from __future__ import annotations


import pytest

from support.studies import TINY, run, write_study
from raysweep.datasets import readers as datasets
from raysweep.datasets.writers import write_cifar100
from raysweep.store.records import read_records
from raysweep.study.parse import load_study

pytestmark = pytest.mark.slow


def by_label(records, variant, seed=0):
    return next(r for r in records if r.labels[0].variant == variant and r.seed == seed)


def test_study_runs_every_trial_of_the_group_and_seeds(smoke_run_dir):
    records = read_records(smoke_run_dir)
    # (baseline, deeper, tiny_lr) × 2 seeds
    assert len(records) == 6
    assert {(r.labels[0].variant, r.seed) for r in records} == {
        (v, s) for v in ("baseline", "deeper", "tiny_lr") for s in (0, 1)}
    for r in records:
        assert r.status == "completed", r
        assert [h.epoch for h in r.history] == [1, 2] == list(range(1, r.epochs + 1))
    tiny = by_label(records, "tiny_lr")
    assert tiny.history[-1].val_top1 < by_label(records, "baseline").history[-1].val_top1


def test_synthetic_data_is_learnt_well_above_chance(smoke_run_dir):
    baseline = by_label(read_records(smoke_run_dir), "baseline")
    assert baseline.status == "completed"
    chance = 100 / TINY["synthetic_classes"]
    assert baseline.history[-1].val_top1 > 3 * chance
    assert baseline.history[-1].test_top1 > 3 * chance


def test_record_carries_model_facts_splits_and_timings(smoke_run_dir):
    r = by_label(read_records(smoke_run_dir), "baseline")
    assert r.params == 272_474  # resnet_20 with a 10-class head
    assert r.flops > 40e6 and r.family == "baseline"
    assert [(x.group, x.variant, x.baseline) for x in r.labels] == [("demo", "baseline", True)]
    assert all(h.epoch_seconds > 0 and h.images_per_s > 0 for h in r.history)
    assert all(h.val_top1 is not None and h.test_top1 is not None for h in r.history)
    [segment] = r.segments
    assert segment.runner == "inline" and segment.workers == 1
    assert segment.setup_seconds > 0 and segment.first_epoch == 1 and r.restarts == 0
    assert r.train.val_fraction == 0.1 and r.train.peak_lr == TINY["lr"]


def test_same_config_and_seed_give_the_same_first_epoch_on_either_runner(ray_local, tmp_path):
    """The same trial in a Train worker group and inline in its Tune process (`--local`):
    one train loop, so the same numbers. (Two workers: test_one_problem.py.)"""
    path = write_study(tmp_path, "repeat", defaults={**TINY, "epochs": 1},
                       models=["resnet_20"], seeds=[7], asha={"enabled": False})
    workers, inline = (read_records(run(path, tmp_path / "runs", name, inline=inline))[0]
                       for name, inline in (("a", False), ("b", True)))
    assert [r.segments[0].runner for r in (workers, inline)] == ["train-workers", "inline"]
    assert workers.key == inline.key  # the runner is not part of the identity
    a, b = workers.history[0], inline.history[0]
    assert b.train_loss == pytest.approx(a.train_loss, rel=1e-6)
    assert (b.val_top1, b.test_top1) == (a.val_top1, a.test_top1)


def test_cifar100_files_flow_through_torchvision_into_the_worker_loop(ray_local, tmp_path):
    """Inline (the one train loop, as above); CIFAR-100 files in a Train worker group:
    test_decisions.py's ASHA study."""
    root = write_cifar100(tmp_path / "data", n_train=128, n_test=64)
    path = write_study(tmp_path, "cifar", defaults={
        "epochs": 1, "batch_size": 32, "dataset": "cifar100", "data_dir": str(root),
        "data_checksums": False}, models=["resnet_20"], asha={"enabled": False})
    [spec] = load_study(str(path)).trials()
    images, labels = datasets.load(spec.train, "train")
    assert images.shape == (128, 3, 32, 32) and labels.max() < 100
    [r] = read_records(run(path, tmp_path / "runs", inline=True))
    assert r.status == "completed" and r.params == 278_324
    assert 0 <= r.history[0].test_top1 <= 100


def test_zoo_models_train_an_epoch_through_the_engine(ray_local, tmp_path):
    """Issue 3's and issue 4's own designs, one --local epoch each on a sliver of data."""
    names = ["resnet_20", "ecanet20_adaptive", "ghost_resnet_20", "improved_resnet20_convnext",
             "coatnet_cifar_opt", "lsknet_tiny"]
    path = write_study(tmp_path, "zoo", defaults={**TINY, "epochs": 1, "train_size": 32,
                                                  "test_size": 32, "val_fraction": 0},
                       models=names, asha={"enabled": False})
    recs = {r.model: r for r in read_records(run(path, tmp_path / "runs", inline=True))}
    assert set(recs) == set(names)
    for r in recs.values():
        assert r.status == "completed", r.error
        assert r.segments[0].runner == "inline"
        assert [h.epoch for h in r.history] == [1] and r.params > 0
