"""ASHA's rungs: every trial trains its own epoch budget unless it is behind trials of the
same budget (one ASHA per setting and budget), and a re-run or a resume judges its trials
against every result the run has recorded at a rung. Real Ray on CPU, synthetic data.

The hopeless trial is resnet_20 at lr 1e-7 with the learner's seed: the same initial
weights that barely move, so at the first rung it is behind the learner whatever the
order (TINY's learner learns the synthetic set within the first epoch)."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler

from support.studies import TINY, run, write_study
from support.factories import record, spec
from raysweep.engine.driver import run_study
from raysweep.store.records import read_records
from raysweep.engine.rungs import TIME_ATTR, BudgetASHA, milestones, rung_group
from raysweep.study.parse import load_study

HOPELESS = {"model": "resnet_20", "set": {"lr": 1e-7}}


def by_lr_and_budget(run_dir):
    return {(r.train.peak_lr, r.train.epochs): r for r in read_records(run_dir)}


def test_milestones_are_per_budget_and_below_it():
    assert milestones(4, 1, 4) == [1]          # defaults.epochs 1 gave max_t 2: cut at 2
    assert milestones(8, 1, 2) == [1, 2, 4]
    assert milestones(1, 1, 4) == []           # a rung at the last epoch stops nothing
    assert milestones(2, 3, 2) == []           # budget below the grace period: no rung


@pytest.mark.parametrize("reduction_factor", [2, 3, 4, 1.5, 2.5])
def test_milestones_are_the_rungs_of_rays_own_asha(reduction_factor):
    """`milestones` (what `show` prints, without importing Ray) equals the rungs of the
    AsyncHyperBandScheduler each budget's ASHA is, below the budget."""
    for budget in range(1, 80):
        for grace in (g for g in (1, 2, 3, 5) if g <= budget):
            asha = AsyncHyperBandScheduler(time_attr=TIME_ATTR, max_t=budget + 1,
                                           grace_period=grace, reduction_factor=reduction_factor)
            rays = sorted(m for m, _ in asha._brackets[0]._rungs if m < budget)
            assert milestones(budget, grace, reduction_factor) == rays, (budget, grace)


def test_records_seed_the_rungs_of_their_own_budget_with_validation_top1():
    """The scheduler seeded from hand-built records: what each rung holds."""
    learner = record(spec(seed=0, epochs=4), val_top1=[80, 90, 95, 96], top1=[1, 2, 3, 4])
    stopped = record(spec(seed=1, epochs=4), status="stopped", val_top1=[70], top1=[5])
    resumable = record(spec(seed=3, epochs=4), status="interrupted", val_top1=[60, 65],
                       top1=[6, 7])
    longer = record(spec(seed=2, epochs=8), val_top1=[99] * 8, top1=[9] * 8)
    asha = BudgetASHA("val_top1", 1, 2, lambda config: None,
                      [learner, stopped, resumable, longer])

    def rungs(r):
        return {m: sorted(v.values()) for m, v in
                asha.asha[rung_group(r.train)]._brackets[0]._rungs if v}

    # Validation top-1 (never test), at each milestone up to the budget; a stopped or
    # interrupted trial counts at the rungs it reached.
    assert rungs(learner) == {1: [60, 70, 80], 2: [65, 90], 4: [96]}
    assert rungs(longer) == {1: [99], 2: [99], 4: [99], 8: [99]}   # its own ASHA
    assert asha.fed[resumable.key] == 2                     # epochs 1-2 are not judged again


@pytest.mark.slow
def test_each_budget_trains_in_full_or_is_stopped_only_by_its_own_budget(ray_local, tmp_path):
    # The case: defaults.epochs 1, a grid of 4 epochs: all 4 are trained.
    path = write_study(tmp_path, "grid4", defaults={**TINY, "epochs": 1, "train_size": 256},
                       models=["resnet_20"],
                       grid={"epochs": [4]}, asha={"grace_period": 1, "reduction_factor": 4})
    [only] = read_records(run(path, tmp_path / "runs", inline=True))
    assert only.status == "completed" and [h.epoch for h in only.history] == [1, 2, 3, 4]

    # One at a time, in this order: the 2-epoch learner, then a hopeless trial of 3 epochs
    # (first of its budget: nothing to be behind, though the learner's rung holds more),
    # then a hopeless trial of 2 epochs (behind the learner of its own budget: stopped).
    path = write_study(
        tmp_path, "budgets", defaults={**TINY, "epochs": 1},
        models=[{"model": "resnet_20", "set": {"epochs": 2}},
                {"model": "resnet_20", "set": {"lr": 1e-7, "epochs": 3}},
                {"model": "resnet_20", "set": {"lr": 1e-7, "epochs": 2}}],
        asha={"grace_period": 1, "reduction_factor": 2}, resources={"max_concurrent": 1})
    got = by_lr_and_budget(run(path, tmp_path / "runs", inline=True))
    learner, alone, behind = got[TINY["lr"], 2], got[1e-7, 3], got[1e-7, 2]
    assert learner.status == "completed" and learner.last_epoch == 2
    assert alone.history[0].val_top1 < learner.history[0].val_top1   # would lose if compared
    assert alone.status == "completed" and alone.last_epoch == 3
    assert behind.status == "stopped" and behind.stopped_at_epoch == 1


@pytest.mark.slow
def test_a_model_added_by_a_rerun_is_stopped_where_the_whole_study_stops_it(ray_local,
                                                                             tmp_path):
    body = dict(defaults={**TINY, "epochs": 2},
                asha={"grace_period": 1, "reduction_factor": 2},
                resources={"max_concurrent": 1})
    first = write_study(tmp_path, "added", models=["resnet_20"], **body)
    run_dir = run(first, tmp_path / "runs", inline=True)
    assert {r.status for r in read_records(run_dir)} == {"completed"}

    # The same name with a model added: its Tuner holds only the hopeless trial, which
    # must be judged against the learner's recorded rung (alone, it had nothing to lose to).
    more = write_study(tmp_path, "added", models=["resnet_20", HOPELESS], **body)
    timings = {}
    run(more, tmp_path / "runs", timings=timings, inline=True)
    assert timings["trials_run"] == 1
    rerun = by_lr_and_budget_seed(run_dir)

    whole = run(more, tmp_path / "runs", name="whole", inline=True)  # all at once, same order
    at_once = by_lr_and_budget_seed(whole)
    added, there = rerun[1e-7, 0], at_once[1e-7, 0]
    assert added.status == there.status == "stopped"
    assert added.stopped_at_epoch == there.stopped_at_epoch == 1


def by_lr_and_budget_seed(run_dir):
    return {(r.train.peak_lr, r.seed): r for r in read_records(run_dir)}


@pytest.mark.slow
def test_a_resumed_trial_is_judged_against_the_recorded_rung(join_ray, tmp_path):
    """The learner finishes in a first run; the hopeless trial, added by a second run, is
    interrupted (Ctrl-C) before the rung at epoch 4 and resumed by a third: the resumed
    Tuner holds it alone, and the learner's recorded rung stops it at epoch 4."""
    body = dict(defaults={**TINY, "train_size": 256, "epochs": 5},
                asha={"grace_period": 4, "reduction_factor": 2},
                resources={"max_concurrent": 1})
    storage = tmp_path / "runs"
    run_dir = run(write_study(tmp_path, "resumed", models=["resnet_20"], **body), storage,
                  inline=True)
    path = write_study(tmp_path, "resumed", models=["resnet_20", HOPELESS], **body)
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", path, *join_ray,
                             "--storage", storage],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epoch_of(run_dir, 1e-7, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    hopeless = by_lr_and_budget(run_dir)[1e-7, 5]
    assert hopeless.status == "interrupted" and hopeless.last_epoch < 4, hopeless.status

    run_study(load_study(str(path)), str(storage), "resumed", resume=True, inline=True)
    got = by_lr_and_budget(run_dir)
    hopeless, learner = got[1e-7, 5], got[TINY["lr"], 5]
    assert hopeless.segments[-1].resumed_from_epoch is not None     # it resumed
    assert hopeless.status == "stopped" and hopeless.stopped_at_epoch == 4
    assert hopeless.history[3].val_top1 < learner.history[3].val_top1
    assert learner.status == "completed" and len(learner.trial_ids) == 1  # never run again


def wait_for_epoch_of(run_dir, lr, proc):
    """Until the trial at `lr` has recorded an epoch (the learner's are already there)."""
    import time

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        recs = read_records(run_dir)
        if any(r.train.peak_lr == lr and r.last_epoch >= 1 for r in recs):
            return
        time.sleep(0.2)  # polling a condition with a deadline
    raise AssertionError(f"no epoch of lr {lr} recorded (exit code {proc.poll()})")


def test_show_names_the_rungs_of_each_budget(tmp_path, capsys):
    from raysweep import cli

    path = write_study(tmp_path, "show", defaults={**TINY, "epochs": 1}, models=["resnet_20"],
                       grid={"epochs": [1, 4, 8]}, asha={"grace_period": 1,
                                                         "reduction_factor": 2})
    assert cli.main(["show", str(path), "--no-estimate"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "ASHA rungs per epoch budget (trials compete only within their budget): "
        "1 epoch: none, trains in full; 4 epochs: epoch 1, 2; 8 epochs: epoch 1, 2, 4")
