"""Shared fixtures: a real local Ray, a CIFAR-100 copy in torchvision's on-disk format,
and one real small study run whose records several test modules read."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import ray
import yaml

from raysweep import cluster
from raysweep.driver import run_study
from raysweep.study import load_study

# Small enough for 2 CPU cores (an epoch of resnet_20 takes ~2.5 s). AdamW at 3e-3 per
# step (lr is per 128 images) learns the synthetic set within the first epoch, so ASHA's
# first rung already separates a learning trial from a hopeless one.
TINY = {"dataset": "synthetic", "synthetic_classes": 10, "train_size": 512, "test_size": 256,
        "batch_size": 32, "augment": "basic", "recipe": "adamw", "lr": 0.012,
        "scheduler": "cosine"}


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the engine tests, as `--local` starts it. The dashboard is on:
    Train's placement-group cleaner and the State API need it. Yields the dashboard URL
    (State API calls must name it: other Ray instances may run on the machine)."""
    url = cluster.connect(local=True, address=None)
    yield url
    cluster.disconnect()


def write_study(folder: Path, name: str, **body) -> Path:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False))
    return path


def run(study_path: Path, storage: Path, name: str | None = None, **kw) -> Path:
    study = load_study(str(study_path))
    return run_study(study, str(storage), name, **kw)


@pytest.fixture(scope="session")
def smoke_run_dir(ray_local, tmp_path_factory) -> Path:
    """A real --local-style run: one ablation group with a baseline and two variants,
    2 seeds; the `tiny_lr` variant cannot learn, so ASHA stops it at its first rung."""
    folder = tmp_path_factory.mktemp("smoke_run")
    path = write_study(
        folder, "fixture",
        defaults={**TINY, "epochs": 3},
        groups={"demo": {"baseline": "resnet_20",
                         "variants": {"deeper": "resnet_32",
                                      "tiny_lr": {"model": "resnet_20", "set": {"lr": 1e-7}}}}},
        seeds=2,
        asha={"grace_period": 1, "reduction_factor": 2},
        # One trial at a time fixes the order in which ASHA sees results.
        resources={"max_concurrent": 1})
    return run(path, folder / "runs")


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """A CIFAR-100 copy in the exact `cifar-100-python` pickle layout torchvision reads
    (only the MD5 sums differ from the official archive)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n).tolist()
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": split,
                 "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)],
                     "coarse_label_names": [f"super_{i}" for i in range(20)]}, f)
    return Path(root)
