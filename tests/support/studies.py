"""Study files written for a test, and real runs of them through the driver."""
from __future__ import annotations

from pathlib import Path

import yaml

from raysweep.engine.driver import run_study
from raysweep.study.parse import load_study
from raysweep.training import data
from raysweep.training.worker import lr_factor

# Small enough for 2 CPU cores (an epoch of resnet_20 takes ~2.5 s). AdamW at a peak lr
# of 3e-3 (global batch 32) learns the synthetic set within the first epoch, so ASHA's
# first rung already separates a learning trial from a hopeless one. 10% of the 512
# training images are held out for validation.
TINY = {"dataset": "synthetic", "synthetic_classes": 10, "train_size": 512, "test_size": 256,
        "batch_size": 32, "augment": "basic", "recipe": "adamw", "lr": 0.003,
        "scheduler": "cosine"}


def write_study(folder: Path, name: str, **body) -> Path:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False))
    return path


def run(study_path: Path, storage: Path, name: str | None = None, **kw) -> Path:
    study = load_study(str(study_path))
    return run_study(study, str(storage), name, **kw)


def scheduled_lrs(train) -> list[float]:
    """The lr an uninterrupted trial records after each epoch: its peak lr times the
    schedule's factor at the epoch's last global step (`worker.lr_factor`)."""
    steps = data.steps_per_epoch(len(data.prepare(train, "cpu").train), train.batch_size)
    factor = lr_factor(train, steps)
    return [train.peak_lr * factor(e * steps) for e in range(1, train.epochs + 1)]
