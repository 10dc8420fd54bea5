"""Every decision uses the validation split: ASHA stops by validation top-1 (shown on data
where validation and test disagree), and a search re-run under the same name runs only
the samples it lacks, with TPE told the finished ones. Real Ray on CPU."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import ray
import yaml
from ray import tune
from ray.util.state import list_actors

from support.studies import TINY, run, write_study
from raysweep.datasets import readers as datasets
from raysweep.engine.driver import searcher_for
from raysweep.store.records import read_records
from raysweep.study.parse import load_study

pytestmark = pytest.mark.slow


def write_disagreeing_cifar100(root: Path, n_train: int = 512, n_test: int = 256) -> Path:
    """CIFAR-100 files (torchvision's layout) of the synthetic 10-class images whose test
    images carry classes 10-19, which training never shows: a model that learns the
    training classes scores high on validation (carved from training) and 0% on test, since
    training pushes the logits of classes it never sees down."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n, shift in (("train", n_train, 0), ("test", n_test, 10)):
        images, labels = datasets.synthetic(10, n, split)
        entry = {"filenames": [f"{i}.png" for i in range(n)], "batch_label": split,
                 "fine_labels": (labels + shift).tolist(),
                 "coarse_labels": [0] * n, "data": images.reshape(n, -1).numpy()}
        (folder / split).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({
        "fine_label_names": [f"c{i}" for i in range(100)],
        "coarse_label_names": [f"s{i}" for i in range(20)]}))
    return root


def test_asha_stops_trials_by_validation_top1_not_test(ray_local, tmp_path):
    """The learner runs first and the hopeless trial second, so at ASHA's first rung
    (epoch 2) the hopeless one is judged against the learner: by validation it is far
    behind and stops; by test it would not be behind (the learner scores 0% on test classes
    it never trained on, the untrained one at least that) and would go on: ASHA stops a
    trial only below the rung's cutoff."""
    root = write_disagreeing_cifar100(tmp_path / "data")
    data = {**TINY, "dataset": "cifar100", "data_dir": str(root), "data_checksums": False,
            "epochs": 3}
    path = write_study(tmp_path, "decide", defaults=data,
                       models=["resnet_20", {"model": "resnet_20", "set": {"lr": 1e-7}}],
                       asha={"grace_period": 2, "reduction_factor": 2},
                       resources={"max_concurrent": 1})
    # The Train path: a trial that ASHA stops must give its workers back.
    records = {r.train.peak_lr: r for r in read_records(run(path, tmp_path / "runs"))}
    learner, hopeless = records[TINY["lr"]], records[1e-7]
    rung = learner.history[1], hopeless.history[1]
    assert rung[0].val_top1 > rung[1].val_top1 + 50            # validation: learner far ahead
    assert rung[0].test_top1 == 0.0 <= rung[1].test_top1       # test: not ahead at all
    assert learner.status == "completed" and learner.params == 278_324  # 100 classes
    assert hopeless.status == "stopped" and hopeless.stopped_at_epoch == 2
    assert hopeless.segments[0].runner == "train-workers"
    assert alive("RayTrainWorker", ray_local) == [] and alive("TrainController", ray_local) == []


def alive(class_name: str, address: str) -> list:
    """This test process's live actors of `class_name` (its job's: the session's Ray may
    run another process's trials meanwhile)."""
    return list_actors(address=address,
                       filters=[("class_name", "=", class_name), ("state", "=", "ALIVE"),
                                ("job_id", "=", ray.get_runtime_context().get_job_id())])


def test_a_tpe_search_rerun_runs_only_the_missing_samples(ray_local, tmp_path):
    body = dict(defaults={**TINY, "epochs": 1}, models=["resnet_20"],
                asha={"enabled": False},
                search={"algorithm": "tpe", "num_samples": 2,
                        "params": {"lr": {"loguniform": [1e-4, 1e-2]}}})
    path = write_study(tmp_path, "tpe", **body)
    run_dir = run(path, tmp_path / "runs", inline=True)
    first = read_records(run_dir)
    assert sorted(r.sample for r in first) == [1, 2]
    assert all(r.status == "completed" and 1e-4 <= r.train.peak_lr <= 1e-2 for r in first)

    timings = {}
    more = write_study(tmp_path, "tpe", **{**body, "search": {**body["search"], "num_samples": 3}})
    run(more, tmp_path / "runs", timings=timings, inline=True)
    assert (timings["trials_run"], timings["trials_total"]) == (1, 3)   # samples, not arms
    # The run's study changed (2 → 3 samples): the first version is kept beside it.
    kept = yaml.safe_load((run_dir / "study.1.yaml").read_text())
    assert kept["search"]["num_samples"] == 2
    assert yaml.safe_load((run_dir / "study.yaml").read_text())["search"]["num_samples"] == 3
    after = read_records(run_dir)
    assert sorted(r.sample for r in after) == [1, 2, 3]
    assert {r.key for r in first} < {r.key for r in after}
    again = {}
    run(more, tmp_path / "runs", timings=again, inline=True)
    assert again["trials_run"] == 0 and len(read_records(run_dir)) == 3

    # TPE starts from the finished samples: their values and validation top-1.
    study = load_study(str(more))
    [base] = study.trials()
    searcher = searcher_for(study, base, first)
    searcher.set_search_properties("val_top1", "max", {
        "trial": base.key, "search": {"lr": tune.loguniform(1e-4, 1e-2)}})
    told = sorted((t.params["search/lr"], t.value) for t in searcher._ot_study.trials)
    assert told == sorted((r.searched["lr"], r.history[-1].val_top1) for r in first)
    assert np.isfinite([v for _, v in told]).all()
