"""Faults inside a trial that must end only that trial: a NaN/inf loss (`diverged at
epoch e`) and a CUDA out-of-memory (recorded with the batch size). The study goes on."""
from __future__ import annotations

import pytest
import torch

from support.studies import TINY, run, write_study
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow


def test_diverging_trial_is_recorded_and_the_study_goes_on(ray_local, tmp_path):
    path = write_study(tmp_path, "nan", defaults={**TINY, "epochs": 2}, asha={"enabled": False},
                       models=["resnet_20", {"model": "resnet_20", "set": {"lr": 1.0e+9}}])
    recs = {r.train.peak_lr: r for r in read_records(run(path, tmp_path / "runs", inline=True))}
    assert recs[1.0e+9].status == "diverged" and recs[1.0e+9].stopped_at_epoch == 1
    assert "non-finite training loss at epoch 1" in recs[1.0e+9].error
    assert recs[1.0e+9].history[0].train_loss is None  # stored as missing, never as NaN
    assert recs[TINY["lr"]].status == "completed"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a GPU; run on a lent one (benchmarks/README.md has the run)")
def test_cuda_out_of_memory_is_recorded_with_the_batch_size(ray_local, tmp_path):
    # mlp_mixer_b16 trains on 224 px upsampled inputs: 8192 of them per step need far more
    # than any GPU's memory. max_failures 0: a retry would fail the same way.
    big = {"model": "mlp_mixer_b16", "set": {"batch_size": 8192, "train_size": 8192}}
    path = write_study(tmp_path, "oom", defaults={**TINY, "epochs": 1}, asha={"enabled": False},
                       models=[big, "resnet_20"], resources={"max_failures": 0})
    recs = {r.model: r for r in read_records(run(path, tmp_path / "runs"))}
    oom = recs["mlp_mixer_b16"]
    assert oom.status == "errored", oom
    assert "out of memory on cuda:" in oom.error and "8192 images per worker" in oom.error
    assert recs["resnet_20"].status == "completed"
    assert recs["resnet_20"].segments[0].device.startswith("cuda")
