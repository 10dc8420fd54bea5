"""Seed-aware ASHA (`asha: {by: arm}`) and adaptive seeds (`seeds: {min, max, detect}`)
through the real driver, Tune and record writer on a local Ray; the trials report planted
accuracies (`support.planted`) so the test knows what the decisions should find."""
from __future__ import annotations

from collections import defaultdict

import pytest

from support.planted import planted_trial
from support.studies import TINY, run, write_study
from raysweep.decide import seeding
from raysweep.results import ablation
from raysweep.store.records import read_records
from raysweep.study.parse import load_study

pytestmark = pytest.mark.slow


def variant(lr: float) -> dict:
    """A resnet_20 arm of its own (the stand-in ignores the lr; the variant name plants Δ)."""
    return {"model": "resnet_20", "set": {"lr": lr}}


def by_variant(records, group: str) -> dict[str, list]:
    found = defaultdict(list)
    for r in records:
        for label in r.labels:
            if label.group == group:
                found[label.variant].append(r)
    return found


def test_arm_asha_stops_and_promotes_arms_as_wholes(ray_local, tmp_path):
    """Three seeds an arm on two CPUs: two seeds reach a rung while the third waits for a
    CPU, so they pause there until it arrives. The best arm (the baseline) trains in full,
    the arm planted 20 points behind is stopped, and every arm's seeds end together."""
    path = write_study(
        tmp_path, "arms", defaults={**TINY, "epochs": 4}, seeds=3,
        groups={"planted": {"baseline": variant(0.003),
                            "variants": {"drop1": variant(0.0031), "drop20": variant(0.0032)}}},
        asha={"by": "arm", "grace_period": 1, "reduction_factor": 2})
    records = read_records(run(path, tmp_path / "runs", trial_function=planted_trial))
    arms = by_variant(records, "planted")
    assert {v: len(rs) for v, rs in arms.items()} == {"baseline": 3, "drop1": 3, "drop20": 3}
    for name, seeds in arms.items():
        assert len({r.last_epoch for r in seeds}) == 1, (name, [r.last_epoch for r in seeds])
        assert len({r.status for r in seeds}) == 1, (name, [r.status for r in seeds])
    assert {r.status for r in arms["drop20"]} == {"stopped"}
    assert arms["drop20"][0].last_epoch < 4
    assert {r.status for r in arms["baseline"]} == {"completed"}
    # A seed waited at a rung for its siblings: it was paused and relaunched.
    assert any(r.restarts for rs in arms.values() for r in rs)

    # The rungs remember: a re-run that adds an arm planted 30 points behind judges it
    # against the arms recorded at the first rung; nothing else runs again.
    (tmp_path / "added").mkdir()
    added = write_study(
        tmp_path / "added", "arms", defaults={**TINY, "epochs": 4}, seeds=3,
        groups={"planted": {"baseline": variant(0.003),
                            "variants": {"drop1": variant(0.0031), "drop20": variant(0.0032),
                                         "drop30": variant(0.0033)}}},
        asha={"by": "arm", "grace_period": 1, "reduction_factor": 2})
    timings = {}
    again = by_variant(read_records(run(added, tmp_path / "runs", timings=timings,
                                        trial_function=planted_trial)), "planted")
    assert timings["trials_run"] == 3
    assert [(r.status, r.last_epoch) for r in again["drop30"]] == [("stopped", 1)] * 3
    assert {r.key: r.to_dict() for r in records} == \
        {r.key: r.to_dict() for v in ("baseline", "drop1", "drop20") for r in again[v]}


def test_adaptive_seeds_stop_a_decided_variant_and_add_seeds_to_an_open_one(ray_local,
                                                                             tmp_path):
    """Looks at 2, 3 and 4 seeds: a variant planted 20 points behind with quiet seeds is
    decided at the second look (3 seeds); a variant with no effect and noisy seeds (std 3
    points) runs to max, its baseline with it. The added seeds are the trials a fixed
    4-seed study holds."""
    groups = {
        "planted": {"baseline": variant(0.003), "variants": {"drop20": variant(0.0031)}},
        "noisy": {"baseline": variant(0.0032), "variants": {"same": variant(0.0033)}},
    }
    body = dict(defaults={**TINY, "epochs": 2}, groups=groups, asha={"enabled": False})
    path = write_study(tmp_path, "adaptive", seeds={"min": 2, "max": 4, "detect": 1.0}, **body)
    first = {}
    run_dir = run(path, tmp_path / "runs", trial_function=planted_trial, timings=first)
    records = read_records(run_dir)
    assert first["rounds"] == 3   # looks at 2, 3 and 4 seeds; no round without trials
    seeds = {(g, v): sorted(r.seed for r in rs)
             for g in groups for v, rs in by_variant(records, g).items()}
    assert seeds == {("planted", "baseline"): [0, 1, 2], ("planted", "drop20"): [0, 1, 2],
                     ("noisy", "baseline"): [0, 1, 2, 3], ("noisy", "same"): [0, 1, 2, 3]}
    (tmp_path / "fixed").mkdir()
    fixed = write_study(tmp_path / "fixed", "adaptive", seeds=4, **body)
    assert {r.key for r in records} <= {s.key for s in load_study(str(fixed)).trials()}

    # The table says how many seeds each variant ran and why seeding stopped there.
    study = load_study(str(path))
    tables = {t.name: t.data for t in ablation.ablations(records, plan=study.seed_plan)}
    rows = {v: row for v, row in zip(tables["ablation_planted"]["variant"],
                                     tables["ablation_planted"].to_dict("records"))}
    assert rows["drop20"]["seeds"] == 3 and rows["drop20"]["seeding"] == seeding.DECIDED
    noisy = dict(zip(tables["ablation_noisy"]["variant"], tables["ablation_noisy"]["seeding"]))
    assert noisy["same"] == seeding.REACHED_MAX

    # A re-run finds every seed it asks for recorded: nothing runs again.
    timings = {}
    run(path, tmp_path / "runs", trial_function=planted_trial, timings=timings)
    assert timings["trials_run"] == 0 and timings["rounds"] == 1
    assert len(read_records(run_dir)) == len(records)


def test_arm_asha_judges_a_fused_arrays_members_together_without_pausing(ray_local,
                                                                         tmp_path):
    """Real training, fused arrays (one per arm: its two seeds), one array at a time: the
    members report each epoch side by side, so the last to reach the rung decides for the
    arm and none pauses. The hopeless arm (lr 1e-7) is stopped with both seeds at the
    rung; the learner's array trains on."""
    path = write_study(
        tmp_path, "fused", defaults={**TINY, "epochs": 2}, seeds=2,
        models=["resnet_20", {"model": "resnet_20", "set": {"lr": 1e-7}}],
        asha={"by": "arm", "grace_period": 1, "reduction_factor": 2},
        resources={"fuse": "on", "max_concurrent": 1})
    timings = {}
    records = read_records(run(path, tmp_path / "runs", timings=timings, inline=True))
    assert timings["fused_arrays"] == 2
    arms = defaultdict(list)
    for r in records:
        arms[r.train.peak_lr].append(r)
    learner, hopeless = arms.pop(TINY["lr"]), next(iter(arms.values()))
    assert [(r.status, r.last_epoch) for r in learner] == [("completed", 2)] * 2
    assert [(r.status, r.last_epoch) for r in hopeless] == [("stopped", 1)] * 2
    assert all(r.restarts == 0 and r.segments[0].runner == "fused" for r in records)


def test_a_seed_waiting_at_a_rung_resumes_on_train_workers_from_its_checkpoint(ray_local,
                                                                              tmp_path):
    """Real training on Ray Train worker groups (the cluster's path), two seeds whose
    workers need both CPUs: the first pauses at the rung (its sibling has not trained an
    epoch yet), the second trains to the rung and the arm goes on, then the first
    resumes from its checkpoint at the rung (one more launch, no epoch trained twice)."""
    path = write_study(
        tmp_path, "train_path", defaults={**TINY, "epochs": 2}, seeds=2,
        models=["resnet_20"], asha={"by": "arm", "grace_period": 1, "reduction_factor": 2},
        resources={"cpus_per_worker": 2})
    records = read_records(run(path, tmp_path / "runs"))
    assert [(r.status, [h.epoch for h in r.history]) for r in records] == \
        [("completed", [1, 2])] * 2
    [paused] = [r for r in records if r.restarts]
    assert [s.runner for s in paused.segments] == ["train-workers"] * 2
    assert paused.segments[1].first_epoch == 2 and paused.segments[1].resumed_from_epoch == 1
