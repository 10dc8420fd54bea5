"""Bad input on the command line: one `raysweep: error:` line naming the bad value and
what is allowed, exit status 2, no traceback, nothing stored before lost. (Bad study
files are in test_study.py.)"""
from __future__ import annotations

import pytest
import torch

from conftest import one_error_line, raysweep
from raysweep import worker
from raysweep.data import write_cifar100


def test_foreign_and_damaged_checkpoints_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "a" / worker.CHECKPOINT_FILE)
    with pytest.raises(worker.CheckpointError, match="is not a raysweep-checkpoint-v1"):
        worker.load_checkpoint(str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / worker.CHECKPOINT_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(worker.CheckpointError, match="is unreadable"):
        worker.load_checkpoint(str(tmp_path / "b"))


def test_resume_of_an_unknown_run_is_refused(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path,
                                   "--name", "nope", "--resume"))
    assert "--resume: no run named 'nope'" in line


def test_unwritable_storage_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "file"))
    assert "is not writable" in line


def test_more_workers_than_the_cluster_has_fails_fast(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path,
                                   "--workers-per-trial", 64))
    assert "64 workers × 1 CPU = 64 CPUs per trial, but the cluster has" in line


def test_missing_and_damaged_datasets_are_refused_before_any_trial(tmp_path):
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "r",
                                   "--dataset", "cifar100", "--data-dir", tmp_path / "empty"))
    assert "cifar100 not found under data_dir=" in line and "--download" in line
    root = write_cifar100(tmp_path / "data", 16, 8)
    line = one_error_line(raysweep("run", "smoke", "--local", "--storage", tmp_path / "r",
                                   "--dataset", "cifar100", "--data-dir", root))
    assert "fail torchvision's MD5 check" in line
    assert not list((tmp_path / "r").glob("*/records/*.json"))
