"""Incremental studies: re-running a study under the same name after adding a model and
a seed runs only the new trials (a trial's identity is a hash of its resolved config)."""
from __future__ import annotations

import pytest

from support.studies import TINY, run, write_study
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow


def test_rerun_with_an_added_model_and_seed_runs_only_the_new_trials(ray_local, tmp_path):
    body = dict(defaults={**TINY, "epochs": 1}, asha={"enabled": False})
    first = write_study(tmp_path, "inc", models=["resnet_20"], seeds=[0], **body)
    run_dir = run(first, tmp_path / "runs", inline=True)
    [before] = read_records(run_dir)
    second = write_study(tmp_path, "inc", models=["resnet_20", "resnet_32"], seeds=[0, 1], **body)
    timings = {}
    run(second, tmp_path / "runs", timings=timings, inline=True)
    assert (timings["trials_total"], timings["trials_run"]) == (4, 3)
    after = {(r.model, r.seed): r for r in read_records(run_dir)}
    assert after.pop(("resnet_20", 0)) == before  # untouched, not re-run
    assert sorted(after) == [("resnet_20", 1), ("resnet_32", 0), ("resnet_32", 1)]
    assert all(r.status == "completed" for r in after.values())
