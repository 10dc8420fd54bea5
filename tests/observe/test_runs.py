"""`status`, `watch`, `list runs` and `compare` on run folders as a run leaves them
(records written by the record writer's own function, and the run's study.yaml)."""
from __future__ import annotations

import io
import os

import pytest
import scipy.stats
import yaml

from raysweep.observe import runs
from raysweep.errors import RaysweepError
from raysweep.observe.progress import format_view
from support.factories import record, spec, write_run

STUDY = {"name": "demo", "defaults": {"epochs": 3, "dataset": "synthetic"},
         "models": ["resnet_20", "resnet_32"], "seeds": 3}   # 6 trials


def _run(folder, records, study: dict | None = STUDY):
    write_run(folder, records)
    if study:
        (folder / "study.yaml").write_text(yaml.safe_dump(study))
    return folder


def _seeds(model: str, top1: list[float], status: str = "completed", first: int = 0, **train):
    return [record(spec(model, seed=first + i, study="demo", **train), status=status,
                   top1=[t - 5, t - 2, t]) for i, t in enumerate(top1)]


def test_status_counts_the_study_s_trials_from_study_yaml(tmp_path):
    stopped = record(spec("resnet_32", seed=0, study="demo"), status="stopped", top1=[10.0])
    running = record(spec("resnet_32", seed=1, study="demo"), status="running", top1=[20.0])
    folder = _run(tmp_path / "demo", [*_seeds("resnet_20", [50.0, 52.0]), stopped, running])
    view = runs.status(folder)
    assert (view.study, view.total) == ("demo", 6)
    assert view.counts == {"done": 2, "running": 1, "pending": 2, "stopped": 1, "failed": 0,
                           "interrupted": 0}
    text = format_view(view)
    assert text.splitlines()[0].startswith("study demo: 3/6 finished (2 completed, 1 stopped")
    assert "GPU-hours —, no GPU used" in text
    assert text.splitlines()[3].split()[:3] == ["resnet_32-s1", "resnet_32", "running"]


def test_status_without_study_yaml_counts_the_records(tmp_path):
    folder = _run(tmp_path / "copied", _seeds("resnet_20", [50.0]), study=None)
    assert runs.status(folder).total == 1
    with pytest.raises(RaysweepError, match="'.*nowhere' does not exist"):
        runs.status(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RaysweepError, match="is not a raysweep run: it has no records/"):
        runs.status(tmp_path / "empty")


def test_watch_shows_a_finished_run_once_and_returns(tmp_path):
    folder = _run(tmp_path / "demo", _seeds("resnet_20", [50.0, 51.0]), study=None)
    out = io.StringIO()
    # An hour between refreshes: the test would time out if watch waited for one.
    view = runs.watch(folder, interval_s=3600, stream=out)
    assert view.over and out.getvalue().count("study demo: 2/2 finished") == 1


def test_list_runs_names_each_run_with_its_counts_newest_first(tmp_path):
    old = _run(tmp_path / "old", _seeds("resnet_20", [50.0]))
    _run(tmp_path / "new", [record(spec(seed=0, study="demo"), status="running", top1=[30.0])])
    (tmp_path / "not_a_run").mkdir()
    os.utime(old / "records" / os.listdir(old / "records")[0], (0, 0))
    listed = runs.list_runs(tmp_path)
    assert [r.name for r in listed] == ["new", "old"]   # the running trial's write is newest
    assert (listed[1].view.total, listed[1].view.counts["done"]) == (6, 1)
    lines = runs.format_runs(listed).splitlines()
    assert lines[0].split()[:3] == ["run", "study", "trials"]
    assert lines[1].split()[:8] == ["new", "demo", "6", "0", "1", "5", "0", "0"]


def test_compare_pairs_arms_and_uses_only_full_budget_seeds(tmp_path):
    a = _run(tmp_path / "a", [*_seeds("resnet_20", [50.0, 51.0, 52.0]),
                              *_seeds("resnet_20", [20.0], status="stopped", first=3),
                              *_seeds("resnet_32", [60.0], epochs=5)])
    b = _run(tmp_path / "b", [*_seeds("resnet_20", [53.0, 54.0], first=4),   # no seed shared
                              *_seeds("resnet_32", [61.0])])   # a 3-epoch budget: another arm
    c = runs.compare(a, b)
    [arm] = c.arms
    assert arm.label == "resnet_20"
    assert (arm.a.test_top1, arm.b.test_top1) == ({0: 50.0, 1: 51.0, 2: 52.0}, {4: 53.0, 5: 54.0})
    assert (arm.a.left_out, arm.b.left_out) == (1, 0)
    # Two arms labelled resnet_32 (one per run): each named with what tells them apart.
    assert (c.only_a, c.only_b) == (["resnet_32 [epochs=5]"], ["resnet_32 [epochs=3]"])
    # No seed in common: Welch's t-test, Δ = 53.5 − 51.0, SE = sqrt(1²/3 + 0.7071²/2) = 0.76
    welch = scipy.stats.ttest_ind([53.0, 54.0], [50.0, 51.0, 52.0], equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert arm.test.test == "Welch t" and arm.test.delta == pytest.approx(2.5)
    assert arm.test.se == pytest.approx(0.7638, abs=1e-4)
    assert arm.test.p == pytest.approx(welch.pvalue)
    text = runs.format_comparison(c)
    row = next(line for line in text.splitlines() if line.startswith("resnet_20"))
    assert "51.00 ± 1.00 (n=3)" in row and "53.50 ± 0.71 (n=2)" in row
    assert f"+2.50 [{ci.low:+.2f}, {ci.high:+.2f}]" in row and "Welch t" in row
    assert "1/0" in row.split()


def test_compare_with_no_common_arm_says_so(tmp_path):
    a = _run(tmp_path / "a", _seeds("resnet_20", [50.0]))
    b = _run(tmp_path / "b", _seeds("resnet_20", [50.0], lr=0.05))
    assert "no arm in common" in runs.format_comparison(runs.compare(a, b))


def test_compare_pairs_the_seeds_both_runs_hold(tmp_path):
    """Seeds 0-2 in both runs (run A has seed 3 too): a paired t-test over seeds 0-2, as
    scipy's ttest_rel computes it; A's extra seed is in its mean, not in Δ."""
    a = _run(tmp_path / "a", _seeds("resnet_20", [50.0, 51.0, 52.5, 60.0]))
    b = _run(tmp_path / "b", _seeds("resnet_20", [52.0, 54.5, 53.0]))
    [arm] = runs.compare(a, b).arms
    ref = scipy.stats.ttest_rel([52.0, 54.5, 53.0], [50.0, 51.0, 52.5])
    ci = ref.confidence_interval(0.95)
    t = arm.test
    assert (t.test, t.n_pairs, t.df) == ("paired t", 3, 2.0)
    assert t.delta == pytest.approx(2.0)               # mean of (2.0, 3.5, 0.5)
    assert t.se == pytest.approx(2.0 / ref.statistic)
    assert (t.p, t.ci_low, t.ci_high) == pytest.approx((ref.pvalue, ci.low, ci.high))
    assert arm.p_holm == pytest.approx(ref.pvalue)     # one arm tested: Holm's m = 1
    assert arm.val.test == "paired t" and arm.val.delta == pytest.approx(2.0)
    text = runs.format_comparison(runs.compare(a, b))
    row = next(line for line in text.splitlines() if line.startswith("resnet_20"))
    # A's mean and std over its 4 seeds (50, 51, 52.5, 60); Δ over the 3 shared ones.
    assert "53.38 ± 4.53 (n=4)" in row and "paired t (n=3)" in row
    assert f"+2.00 [{ci.low:+.2f}, {ci.high:+.2f}]" in row and f"{ref.pvalue:.3f}" in row
    assert "not significant at α = 0.05 after Holm; could detect |Δ| ≥" in row
    assert "seeds only one run holds are in its mean, not in the paired Δ" in text


def test_status_and_compare_tell_apart_arms_that_share_a_label(tmp_path):
    """A run re-run under its name with a changed study holds two arms labelled resnet_20
    (3 and 4 epochs): status and compare name each with what differs."""
    both = [*_seeds("resnet_20", [50.0, 51.0]), *_seeds("resnet_20", [40.0], epochs=4)]
    a, b = _run(tmp_path / "a", both), _run(tmp_path / "b", both)
    labels = [row.label for row in runs.status(a).rows]
    assert sorted(labels) == ["resnet_20-s0 [epochs=3]", "resnet_20-s0 [epochs=4]",
                              "resnet_20-s1 [epochs=3]"]
    assert [arm.label for arm in runs.compare(a, b).arms] == ["resnet_20 [epochs=3]",
                                                             "resnet_20 [epochs=4]"]


def test_a_changed_study_keeps_each_earlier_version(tmp_path, capsys):
    """A re-run under the same name with another study: study.yaml is the new one, the
    earlier ones are study.1.yaml, study.2.yaml, ..., and one line says what changed."""
    from raysweep.store.provenance import keep_study_versions

    versions = [yaml.safe_dump({**STUDY, "seeds": n}) for n in (3, 3, 4, 5)]
    for text in versions:
        keep_study_versions(tmp_path, text)
    assert (tmp_path / "study.yaml").read_text() == versions[3]
    assert [(tmp_path / f"study.{n}.yaml").read_text() for n in (1, 2)] == versions[1:3]
    assert not (tmp_path / "study.3.yaml").exists()     # an unchanged re-run keeps nothing
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"raysweep: run {tmp_path.name!r} was made with another study "
                     f"(seeds: {a} → {b}); the earlier one is kept as study.{n}.yaml"
                     for n, (a, b) in enumerate([(3, 4), (4, 5)], 1)]
    assert runs.status(tmp_path).total == 10            # the study as it is now: 2 × 5 seeds


@pytest.mark.parametrize("command", [
    ["--help"], ["list", "spaces"], ["list", "runs", "--storage", "{storage}"],
    ["status", "{a}"], ["compare", "{a}", "{b}"], ["show", "smoke", "--no-estimate"]])
def test_commands_that_only_read_import_neither_torch_ray_nor_matplotlib(tmp_path, command):
    """A user runs `status` dozens of times a day: it and the other read-only commands
    start in a fraction of a second (torch alone is ~2.5 s of CPU, matplotlib and pandas
    ~1 s; benchmarks/bench_startup.py times them)."""
    import subprocess
    import sys

    a = _run(tmp_path / "runs" / "a", _seeds("resnet_20", [50.0, 52.0]))
    b = _run(tmp_path / "runs" / "b", _seeds("resnet_20", [51.0, 54.0]))
    args = [c.format(storage=tmp_path / "runs", a=a, b=b) for c in command]
    code = ("import sys; from raysweep.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, *sorted(m for m in ('torch', 'ray', 'matplotlib', 'pandas', 'timm') "
            "if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.stderr.split("\n")[-2].split() == ["0"], proc.stderr[-2000:]


def test_status_spreads_the_eta_over_the_trials_the_run_holds_at_once(tmp_path):
    """`raysweep run` writes its concurrency to provenance.json; `status` divides the work
    left by it (not by the trials running at that moment), and a run with nothing running
    has no ETA."""
    import json

    running = record(spec("resnet_20", seed=2, study="demo"), status="running", top1=[50.0])
    folder = _run(tmp_path / "demo", [*_seeds("resnet_20", [50.0, 52.0]), running])
    (folder / "provenance.json").write_text(json.dumps(
        {"study": "demo", "runs": [{"trials_total": 6, "max_concurrent": 3}]}))
    # 2 epochs of the running trial + 3 pending trials × 3 epochs, 10 s each, on 3 lanes
    assert runs.status(folder).eta_seconds == pytest.approx((2 + 9) * 10.0 / 3)
    running.status = "interrupted"
    write_run(folder, [running])
    assert runs.status(folder).eta_seconds is None


def test_status_shows_the_time_since_the_running_sitting_started(tmp_path):
    """provenance.json's `started_at` (written when `raysweep run` starts): `status` of a
    run with a trial running shows how long it has been going; a run with nothing
    running shows no elapsed time."""
    import json
    from datetime import datetime, timedelta, timezone

    running = record(spec("resnet_20", seed=2, study="demo"), status="running", top1=[50.0])
    folder = _run(tmp_path / "demo", [*_seeds("resnet_20", [50.0]), running])
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2, minutes=5)
    (folder / "provenance.json").write_text(json.dumps(
        {"study": "demo", "runs": [{"trials_total": 6, "started_at": two_hours_ago.isoformat()}]}))
    assert " · elapsed 2h05m · " in format_view(runs.status(folder)).splitlines()[0]
    running.status = "interrupted"
    write_run(folder, [running])
    assert "elapsed" not in format_view(runs.status(folder))
