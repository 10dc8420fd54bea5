"""`raysweep run` states a study's cost before any trial starts, and asks at a terminal
before starting a large one (issue 27): the estimate from step times `show` cached (here,
planted: a CPU step of 100 s makes a one-trial study "9 h"), the question, its answers,
--yes, and a run off a terminal that starts with the estimate printed."""
from __future__ import annotations

import io
import socket
import sys
from pathlib import Path

import pytest
import ray

from raysweep.cli import _cost_first
from raysweep.core.planning import plan_trials
from raysweep.estimate.cost import StepTime, cache_key, cpu_name, write_cache
from raysweep.store.records import read_records
from raysweep.study.parse import load_study
from support.studies import TINY, write_study
from support.terminal import run_in_pty


class Terminal(io.StringIO):
    """What a user types at a terminal (stdin that is a tty)."""
    def isatty(self) -> bool:
        return True


def plant_slow_step_times(home: Path, study, resources) -> None:
    """A cached CPU step time of 100 s for the study's models: one epoch of TINY's 14
    steps is then ~25 min, a 20-epoch trial ~9 h, over the 8-hour question."""
    for spec in study.trials():
        threads = max(1, int(resources[spec.key].cpus_per_worker))
        slow = StepTime(spec.model, {}, cpu_name(), "cpu", socket.gethostname(), threads,
                        (16, 32), (100.0, 100.0), (10.0, 10.0), 5, "2026-12-08T00:00:00+00:00",
                        0.1)
        write_cache({cache_key(spec, cpu_name(), socket.gethostname(), threads): slow},
                    home / ".cache" / "raysweep" / "step_times.json")


def planned(tmp_path, epochs: int):
    path = write_study(tmp_path, "costly", defaults={**TINY, "epochs": epochs},
                       models=["resnet_20"], asha={"enabled": False})
    study = load_study(str(path))
    resources, concurrent = plan_trials(study.resources, study.trials(),
                                        ray.cluster_resources())
    return path, study, resources, concurrent


def test_a_large_estimate_is_asked_at_a_terminal_and_started_without_one(
        ray_local, tmp_path, monkeypatch):
    path, study, resources, concurrent = planned(tmp_path, epochs=20)
    monkeypatch.setenv("HOME", str(tmp_path))
    plant_slow_step_times(tmp_path, study, resources)
    plan = (study.trials(), resources, concurrent)

    out = io.StringIO()
    assert not _cost_first(study, False, *plan, stdin=Terminal("n\n"), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("raysweep: estimate for this CPU") and "trial-hours" in lines[0]
    assert lines[-1].startswith("raysweep: start this study of ~") and \
        lines[-1].endswith("h of wall time (asked from 8)? [y/N] ")
    assert _cost_first(study, False, *plan, stdin=Terminal("y\n"), stdout=io.StringIO())

    for yes, stdin in ((True, Terminal("")), (False, io.StringIO(""))):
        out = io.StringIO()
        assert _cost_first(study, yes, *plan, stdin=stdin, stdout=out)
        assert "[y/N]" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].endswith("without asking: not a terminal")


def test_a_small_study_with_nothing_known_starts_and_says_so(ray_local, tmp_path,
                                                               monkeypatch):
    _, study, resources, concurrent = planned(tmp_path, epochs=2)
    monkeypatch.setenv("HOME", str(tmp_path))     # no cached step time
    out = io.StringIO()
    assert _cost_first(study, False, study.trials(), resources, concurrent,
                       stdin=Terminal(""), stdout=out)
    assert out.getvalue() == ("raysweep: 1 trial, 2 trial-epochs; no step time is known "
                              "here (`raysweep show` measures one)\n")


@pytest.mark.slow
def test_declined_at_the_terminal_nothing_runs(join_ray, tmp_path):
    """The whole command in a pseudo-terminal: it prints the estimate, asks, and on "n"
    exits 1 with nothing trained and no record written."""
    path, study, resources, _ = planned(tmp_path, epochs=20)
    home = tmp_path / "home"
    (home / ".ray").parent.mkdir(parents=True)
    (home / ".ray").symlink_to(Path("~/.ray").expanduser())   # the joined Ray's token
    plant_slow_step_times(home, study, resources)
    text, status = run_in_pty(
        [sys.executable, "-m", "raysweep.cli", "run", str(path), *join_ray,
         "--storage", str(tmp_path / "runs")], timeout=120, env={"HOME": str(home)},
        answer=("[y/N]", "n\n"))
    assert status == 1, text[-2000:]
    assert "raysweep: estimate for this CPU" in text and "not started" in text
    assert read_records(tmp_path / "runs" / "costly") == []
