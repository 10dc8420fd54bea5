"""Bad input: one `raysweep: error:` line naming the bad value and what is allowed, exit
status 2, no traceback, nothing stored before lost, and Ray never started (no Ray session
of the process exists). (More bad study files are in test_study.py.)"""
from __future__ import annotations

import errno
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from support.studies import TINY, write_study
from support.cli import one_error_line, raysweep
from raysweep.datasets.writers import write_cifar100
from raysweep.errors import StudyError
from raysweep.study.parse import MAX_DEPTH, NAME_MAX, check_name, load_study, parse_study

RAY_TEMP = os.environ.get("RAY_TMPDIR", "/tmp") + "/ray"


def refused(*args) -> str:
    """Run the CLI as a user would; its one error line, after checking that the process
    started no Ray (a Ray session's folder ends with the pid of the process that started
    it). Folders left by earlier processes that had the same pid do not count."""
    earlier = set(glob.glob(f"{RAY_TEMP}/session_*"))
    proc = subprocess.Popen([sys.executable, "-m", "raysweep.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert "Ray dashboard at" not in out
    started = set(glob.glob(f"{RAY_TEMP}/session_*_{proc.pid}")) - earlier
    assert not started, f"the command started Ray: {sorted(started)}"
    return line


def study(tmp_path, name="bad", **body):
    body.setdefault("models", ["resnet_20"])
    body.setdefault("defaults", {**TINY, "epochs": 1})
    return write_study(tmp_path, name, **body)


def test_nan_is_refused_before_ray(tmp_path):
    line = refused("run", study(tmp_path), "--local", "--storage", tmp_path / "runs",
                   "--set", "lr=.nan")
    assert line == "raysweep: error: defaults.lr=nan must be a finite number"


@pytest.mark.parametrize("key, value", [
    ("lr", ".inf"), ("momentum", ".nan"), ("weight_decay", "-.inf"), ("label_smoothing", ".nan"),
    ("lr_base_batch", ".inf")])
def test_nan_and_infinity_are_refused_for_every_number(tmp_path, key, value):
    with pytest.raises(StudyError, match=rf"^defaults\.{key}=.* must be (a finite number|an integer)"):
        load_study(str(study(tmp_path)), [f"{key}={value}"])


@pytest.mark.parametrize("search, message", [
    ({"params": {"momentum": {"choice": [0.9, 1.5]}}},
     "search.params.momentum.choice value 1.5 must be <= 1"),
    ({"params": {"lr": {"uniform": [0.1, ".inf"]}}}, "search.params.lr.uniform="),
    ({"by_recipe": {"sgd": {"label_smoothing": {"choice": [".nan"]}}}},
     "search.by_recipe.sgd.label_smoothing.choice value nan must be a finite number")])
def test_search_values_are_checked_against_the_schema(tmp_path, search, message):
    path = study(tmp_path)
    path.write_text(path.read_text() + "search: " + json.dumps(search).replace('".inf"', ".inf")
                    .replace('".nan"', ".nan") + "\n")
    with pytest.raises(StudyError, match=re.escape(message)):
        load_study(str(path))


def test_deeply_nested_yaml_and_set_values_are_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: deep\nmodels: [resnet_20]\ndefaults: {x: " + "[" * 5000
                    + "]" * 5000 + "}\n")
    assert "nested too deeply" in refused("run", deep, "--local", "--storage", tmp_path)
    nested = "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2)
    with pytest.raises(StudyError, match=f"nested more than {MAX_DEPTH} levels deep"):
        load_study(str(study(tmp_path)), [f"lr={nested}"])
    with pytest.raises(StudyError, match="nested too deeply"):
        load_study(str(study(tmp_path)), ["lr=" + "[" * 4000 + "]" * 4000])


def test_an_unsafe_variant_name_is_refused_before_ray(tmp_path):
    path = study(tmp_path, models=None, groups={"g": {"baseline": "resnet_20",
                                                      "variants": {"a/b": "resnet_32"}}})
    line = refused("run", path, "--local", "--storage", tmp_path)
    assert line == ("raysweep: error: groups.g.variants='a/b' has '/'; allowed: letters, "
                    f"digits and - _ . ( ) + = , @, at most {NAME_MAX} characters, not "
                    "starting with '.'")


@pytest.mark.parametrize("where, name, why", [
    ("groups.g.variants", "v" * 300, "is 300 characters long"),
    ("groups.g.variants", "x y", "has ' '"), ("groups", ".hidden", "starts with '.'"),
    ("name", "a\\b", "has '\\\\'")])
def test_unsafe_names_are_refused(tmp_path, where, name, why):
    group, variant = (name, "v") if where == "groups" else ("g", name)
    body = {"name": name if where == "name" else "ok",
            "groups": {group: {"baseline": "resnet_20", "variants": {variant: "resnet_32"}}}}
    with pytest.raises(StudyError) as err:
        parse_study(body, "s.yaml")
    assert f"{where}={name[:80]!r} {why}" in str(err.value)


def test_a_run_name_cannot_leave_the_storage_folder(tmp_path):
    line = refused("run", study(tmp_path), "--local", "--storage", tmp_path / "runs",
                   "--name", "../../escape")
    assert line.startswith("raysweep: error: --name='../../escape' has '/'")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()
    for name in ("/tmp/absolute", "..", ""):
        with pytest.raises(StudyError, match="--name="):
            check_name("--name", name)


def test_a_storage_path_that_is_a_file_or_unwritable_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = refused("run", study(tmp_path), "--local", "--storage", tmp_path / "file")
    assert "is not writable" in line and str(tmp_path / "file") in line
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anyway; the file case above covers it there
        assert "is not writable" in refused("run", study(tmp_path), "--local",
                                            "--storage", locked)


def test_a_full_disk_is_one_line_before_ray(tmp_path, small_disk):
    _fill(small_disk)
    line = refused("run", study(tmp_path), "--local", "--storage", small_disk)
    assert line.endswith("is not writable: No space left on device")


def _fill(folder) -> None:
    """Write until the device is full."""
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def test_a_study_past_the_trial_limit_is_refused_with_its_count(tmp_path):
    grid = {"lr": [0.001 * (i + 1) for i in range(200)],
            "weight_decay": [0.0001 * (i + 1) for i in range(100)]}
    path = study(tmp_path, grid=grid)
    line = refused("run", path, "--local", "--storage", tmp_path)
    assert line == ("raysweep: error: the study expands to 20,000 trials (1 arms × 20,000 grid "
                    "points × 1 seeds), more than --max-trials=10,000 allows; narrow it, or "
                    "pass --max-trials 20000 to run them all")
    shown = raysweep("show", path, timeout=60)
    assert shown.returncode == 0 and "20,000 trials" in shown.stdout.splitlines()[0]
    assert len(shown.stdout.splitlines()) < 60   # a summary, not 20,000 lines


def test_resume_of_an_unknown_run_is_refused(tmp_path):
    line = refused("run", "smoke", "--local", "--storage", tmp_path, "--name", "nope",
                   "--resume")
    assert "--resume: no run named 'nope'" in line


def test_missing_and_damaged_datasets_are_refused_before_any_trial(tmp_path):
    line = refused("run", "smoke", "--local", "--storage", tmp_path / "r",
                   "--dataset", "cifar100", "--data-dir", tmp_path / "empty")
    assert "cifar100 not found under data_dir=" in line and "--download" in line
    root = write_cifar100(tmp_path / "data", 16, 8)
    line = refused("run", "smoke", "--local", "--storage", tmp_path / "r",
                   "--dataset", "cifar100", "--data-dir", root)
    assert "fail torchvision's MD5 check" in line
    assert not list((tmp_path / "r").glob("*/records/*.json"))


@pytest.mark.slow
def test_more_workers_than_the_cluster_has_fails_fast(tmp_path, join_ray):
    line = one_error_line(raysweep("run", "smoke", *join_ray, "--storage", tmp_path,
                                   "--workers-per-trial", 64))
    assert "64 workers × 1 CPU = 64 CPUs per trial, but the cluster has" in line


def test_local_with_the_address_of_another_machine_is_refused_before_ray(tmp_path):
    """`--local --address` joins a Ray on this machine (trials run as under `--local`,
    writing to local folders); another machine's address is refused."""
    line = refused("run", study(tmp_path), "--local", "--address", "192.0.2.7:6379",
                   "--storage", tmp_path / "runs")
    assert line == ("raysweep: error: --address='192.0.2.7:6379' with --local must be a Ray "
                    "on this machine; allowed: 127.0.0.1:PORT or an address of this "
                    "machine's own")


def test_a_refused_run_imports_neither_torch_nor_ray(tmp_path):
    """A `run` refused for its study or options answers without torch's or Ray's import
    (seconds of CPU each): the study is parsed without reading an image."""
    code = ("import sys; from raysweep import cli\n"
            "for args in sys.argv[1:]:\n"
            "    assert cli.main(args.split('|')) == 2, args\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules))")
    path = study(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code,
                           f"run|{path}|--local|--storage|{tmp_path}|--set|lr=.nan",
                           f"run|{path}|--local|--storage|{tmp_path}|--name|../x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
