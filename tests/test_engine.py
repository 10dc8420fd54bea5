"""The engine path for real: Tune + ASHA over TorchTrainer trials on a local Ray (CPU)."""
from __future__ import annotations


import pytest
from ray.util.state import list_actors

from conftest import TINY, run, write_study
from raysweep.data import write_cifar100
from raysweep import data
from raysweep.records import read_records

pytestmark = pytest.mark.slow


def alive(class_name: str, address: str) -> list:
    return list_actors(address=address,
                       filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")])


def by_variant(records, variant, seed=0):
    return next(r for r in records if r["variant"] == variant and r["seed"] == seed)


def test_study_runs_every_trial_and_asha_stops_the_hopeless_one(smoke_run_dir, ray_local):
    records = read_records(smoke_run_dir)
    # (baseline, deeper, tiny_lr) × 2 seeds
    assert len(records) == 6
    assert {(r["variant"], r["seed"]) for r in records} == {
        (v, s) for v in ("baseline", "deeper", "tiny_lr") for s in (0, 1)}
    for r in records:
        assert r["status"] in ("completed", "stopped"), r
        epochs = [h["epoch"] for h in r["history"]]
        assert epochs == list(range(1, len(epochs) + 1))
        if r["status"] == "stopped":
            assert r["stopped_at_epoch"] == epochs[-1] < r["epochs"]
        else:
            assert epochs[-1] == r["epochs"] == 3
    for seed in (0, 1):
        stopped = by_variant(records, "tiny_lr", seed)
        assert stopped["status"] == "stopped" and stopped["stopped_at_epoch"] == 1
    # Its Train workers and controller are gone once the study is over.
    assert alive("RayTrainWorker", ray_local) == [] and alive("TrainController", ray_local) == []


def test_synthetic_data_is_learnt_well_above_chance(smoke_run_dir):
    baseline = by_variant(read_records(smoke_run_dir), "baseline")
    assert baseline["status"] == "completed"
    assert baseline["history"][-1]["top1"] > 3 * 100 / TINY["synthetic_classes"]


def test_record_carries_model_facts_and_timings(smoke_run_dir):
    r = by_variant(read_records(smoke_run_dir), "baseline")
    assert r["params"] == 272_474  # resnet_20 with a 10-class head
    assert r["flops"] > 40e6 and r["family"] == "baseline"
    assert r["group"] == "demo" and r["baseline"] is True
    assert all(h["epoch_seconds"] > 0 and h["images_per_s"] > 0 for h in r["history"])
    assert r["setup_seconds"] and r["setup_seconds"][0] > 0
    # A TensorBoard event file per trial, written by Tune's logger.
    assert list((smoke_run_dir / "tune").glob(f"*{r['trial_id']}*/events.out.tfevents.*"))


def test_same_config_and_seed_give_the_same_first_epoch_on_either_runner(ray_local, tmp_path):
    """The same trial in a Train worker group, again, and inline in its Tune process
    (`--local`): one train loop, so the same numbers."""
    path = write_study(tmp_path, "repeat", defaults={**TINY, "epochs": 1},
                       models=["resnet_20"], seeds=[7], asha={"enabled": False})
    runs = [read_records(run(path, tmp_path / "runs", name, inline=inline))[0]
            for name, inline in (("a", False), ("b", False), ("c", True))]
    assert [r["runner"] for r in runs] == ["train-workers", "train-workers", "inline"]
    first = runs[0]["history"][0]
    for other in runs[1:]:
        assert other["history"][0]["train_loss"] == pytest.approx(first["train_loss"], rel=1e-6)
        assert other["history"][0]["top1"] == first["top1"]


def test_two_cpu_workers_train_with_gloo_ddp_and_rank0_reports(ray_local, tmp_path):
    path = write_study(tmp_path, "ddp", defaults={**TINY, "epochs": 2}, models=["resnet_20"],
                       asha={"enabled": False}, resources={"workers_per_trial": 2})
    [r] = read_records(run(path, tmp_path / "runs"))
    assert r["status"] == "completed" and r["world_size"] == 2 and r["reported_rank"] == 0
    assert len(r["hosts"].split(",")) == 2
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]


def test_cifar100_files_flow_through_torchvision_into_the_worker_loop(ray_local, tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=128, n_test=64)
    train = {"dataset": "cifar100", "data_dir": str(root), "download": False,
             "data_checksums": False, "train_size": None, "test_size": None}
    images, labels = data.load_split(train, "train")
    assert images.shape == (128, 3, 32, 32) and labels.max() < 100
    path = write_study(tmp_path, "cifar", defaults={
        "epochs": 1, "batch_size": 32, "dataset": "cifar100", "data_dir": str(root),
        "data_checksums": False}, models=["resnet_20"], asha={"enabled": False})
    [r] = read_records(run(path, tmp_path / "runs"))
    assert r["status"] == "completed" and r["params"] == 278_324
    assert 0 <= r["history"][0]["top1"] <= 100


def test_search_samples_values_per_recipe_and_records_each_sample(ray_local, tmp_path):
    path = write_study(tmp_path, "hpo", defaults={**TINY, "epochs": 1, "recipe": None,
                                                  "lr": None, "scheduler": None},
                       models=["resnet_20"], asha={"enabled": False},
                       search={"num_samples": 2, "by_recipe": {
                           "sgd": {"lr": {"loguniform": [0.01, 0.1]}},
                           "adamw": {"lr": {"loguniform": [1e-6, 1e-5]}}}})
    recs = read_records(run(path, tmp_path / "runs"))
    assert len(recs) == 2 and len({r["key"] for r in recs}) == 2
    for r in recs:  # resnet_20's recipe is sgd: only the sgd range applies
        assert 0.01 <= r["config"]["lr"] <= 0.1 and r["status"] == "completed"


def test_zoo_models_train_an_epoch_through_the_engine(ray_local, tmp_path):
    """Issue 3's and issue 4's own designs, one --local epoch each on a sliver of data."""
    names = ["resnet_20", "ecanet20_adaptive", "ghost_resnet_20", "improved_resnet20_convnext",
             "coatnet_cifar_opt", "lsknet_tiny"]
    path = write_study(tmp_path, "zoo", defaults={**TINY, "epochs": 1, "train_size": 32,
                                                  "test_size": 32},
                       models=names, asha={"enabled": False})
    recs = {r["model"]: r for r in read_records(run(path, tmp_path / "runs", inline=True))}
    assert set(recs) == set(names)
    for r in recs.values():
        assert r["status"] == "completed", r["error"]
        assert r["runner"] == "inline"
        assert [h["epoch"] for h in r["history"]] == [1] and r["params"] > 0
