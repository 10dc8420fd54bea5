"""No silent failure (issue 29): exit statuses that tell a scheduler the truth, refusals
that are instant and exact, no credential written. The refusals are checked in-process
through the CLI's `main` (what `raysweep` runs) before any Ray; the errored-trial exit
status with one real run on a full disk."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from support.studies import TINY, write_study
from support.cli import raysweep
from support.disk import tmpfs
from raysweep.cli import EXIT_TRIALS_ERRORED, main
from raysweep.store.redact import MASK
from raysweep.store.records import read_records

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def cli(capsys, *args) -> tuple[int, str]:
    """`raysweep ARGS` in this process: (exit status, the last line on stderr)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return code, err[-1] if err else ""


def study(tmp_path, name="s", **body) -> Path:
    body.setdefault("models", ["resnet_20"])
    body.setdefault("defaults", {**TINY, "epochs": 1})
    return write_study(tmp_path, name, **body)


# --- bad values: one line, exit 2, before Ray ---

@pytest.mark.parametrize("override, message", [
    ("epochs=99999999999999999999", "defaults.epochs=99999999999999999999 must be <= 100000"),
    ("batch_size=99999999999", "defaults.batch_size=99999999999 must be <= 16777216"),
    ("train_size=99999999999", "defaults.train_size=99999999999 must be <= 2147483648"),
    ("split_seed=-1", "defaults.split_seed=-1 must be >= 0"),
    ("asha.grace_period=99999999999", "asha.grace_period=99999999999 must be <= 100000"),
    ("epochs", "--set 'epochs' has no '='; allowed: a dotted name, '=' and a value, e.g. "
               "--set epochs=2"),
])
def test_out_of_range_integers_and_a_set_without_equals_are_one_line(tmp_path, capsys,
                                                                     override, message):
    code, line = cli(capsys, "show", study(tmp_path), "--no-estimate", "--set", override)
    assert (code, line) == (2, f"raysweep: error: {message}")
    assert MASK not in line


@pytest.mark.parametrize("seeds, message", [
    (99999999999, "seeds=99999999999 must be <= 100,000 (a count) or a list of integers"),
    ([1, 99999999999], "seeds value 99999999999 is out of range; allowed: 0..4294967295")])
def test_seeds_are_bounded(tmp_path, capsys, seeds, message):
    code, line = cli(capsys, "show", study(tmp_path, seeds=seeds), "--no-estimate")
    assert (code, line) == (2, f"raysweep: error: {message}")


def test_yaml_12_floats_are_numbers(tmp_path, capsys):
    path = study(tmp_path)
    path.write_text(path.read_text() + "grid:\n  lr: [1e-06, 1.0e3, 3.0e-4]\n")
    assert cli(capsys, "show", path, "--no-estimate")[0] == 0


LAUGHS = ("name: s\nmodels: [resnet_20]\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    "a%d: &a%d [%s]\n" % (i, i, ", ".join([f"*a{i - 1}"] * 9)) for i in range(1, 9))).encode()


@pytest.mark.parametrize("content, message", [
    (b"name: s\nmodels: [resnet_20]\nmodels: [resnet_32]\n",
     "line 3 is not valid YAML: key 'models' is given twice (first on line 2)"),
    (b"name: s\n\xff\xfe\x00models: [resnet_20]\n",
     "is not UTF-8 text (byte 0xff at offset 8); allowed: a YAML study file in UTF-8"),
    # a "billion laughs" of 8 levels of 9 aliases (9**8 values) in under 1 KB
    (LAUGHS,
     "expands (through its aliases) to more than 100,000 values; allowed: at most 100,000"),
    (b"name: s\nmodels: &m [resnet_20, *m]\n",
     "an alias refers to a value that contains it; allowed: aliases of finished values"),
])
def test_bad_study_files_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    assert len(content) < 1024
    code, line = cli(capsys, "show", path, "--no-estimate")
    assert code == 2 and line.startswith("raysweep: error: ") and line.endswith(message), line


@pytest.mark.parametrize("target, found", [("/dev/zero", "is a character device"),
                                           ("DIR", "is a folder")])
def test_a_study_path_that_is_no_file_names_what_it_is(tmp_path, capsys, target, found):
    target = str(tmp_path) if target == "DIR" else target
    code, line = cli(capsys, "show", target, "--no-estimate")
    assert code == 2 and line.startswith(f"raysweep: error: study file {target!r} {found}; "
                                         f"allowed: a YAML file"), line


@pytest.mark.parametrize("command", ["status", "report", "tensorboard", "compare"])
def test_run_folder_commands_name_what_they_found(tmp_path, capsys, command):
    extra = ["/etc/passwd"] if command == "compare" else []
    code, line = cli(capsys, command, "/etc/passwd", *extra)
    assert (code, line) == (2, "raysweep: error: run folder '/etc/passwd' is a file; allowed: "
                               "a run folder (<storage>/<run name>, holding records/ and "
                               "study.yaml)")
    code, line = cli(capsys, command, tmp_path / "none", *extra)
    assert code == 2 and f"'{tmp_path / 'none'}' does not exist" in line


def test_a_json_file_that_is_no_record_is_not_called_version_1(tmp_path):
    from raysweep.store.records import refuse_other_versions

    run_dir = tmp_path / "runs" / "r"
    (run_dir / "records").mkdir(parents=True)
    (run_dir / "records" / "x.json").write_text('{"a": 1}')
    with pytest.warns(UserWarning, match=r"x\.json: not a trial record \(no record_version, "
                                         r"and not the key, model and status of a version 1"):
        assert read_records(run_dir) == []
    refuse_other_versions(run_dir)  # not a record of another version: no refusal


# --- credentials ---

def test_a_data_dir_uri_is_a_uri_and_its_credentials_are_never_echoed(tmp_path, capsys):
    uri = f"s3://{AWS_KEY_ID}:{AWS_SECRET}@bucket/data"
    code, line = cli(capsys, "run", study(tmp_path), "--local", "--storage", tmp_path / "runs",
                     "--set", f"data_dir={uri}")
    assert (code, line) == (2, "raysweep: error: defaults.data_dir='s3://***@bucket/data' is a "
                               "s3:// URI and holds credentials, which raysweep never stores; "
                               "allowed: a local folder or a file:// URI (datasets are read "
                               "from local disk on every node)")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))
    code, line = cli(capsys, "run", study(tmp_path), "--data-dir", "gs://bucket/data",
                     "--storage", tmp_path / "runs")
    assert code == 2 and "is a gs:// URI; allowed" in line
    # file:// is a local folder, unwrapped (not a relative folder named "file:")
    from raysweep.study.parse import load_study

    spec = load_study(str(study(tmp_path)), [f"data_dir=file://{tmp_path}/d"]).trials()[0]
    assert spec.train.data_dir == str(tmp_path / "d")


def test_resume_of_a_run_whose_study_stored_a_masked_value_asks_for_it(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "s"
    run_dir.mkdir(parents=True)
    stored = yaml.safe_load(study(tmp_path).read_text())
    stored["defaults"]["data_dir"] = f"s3://{MASK}@bucket/data"  # as an older raysweep wrote
    (run_dir / "study.yaml").write_text(yaml.safe_dump(stored))
    (run_dir / "records").mkdir()
    code, line = cli(capsys, "run", "s", "--name", "s", "--resume", "--storage", tmp_path / "runs")
    assert (code, line) == (2, f"raysweep: error: --resume: {run_dir / 'study.yaml'} stores "
                               f"defaults.data_dir='s3://***@bucket/data' with a credential "
                               f"masked; give the value again: --set defaults.data_dir=VALUE "
                               f"(or --data-dir)")


def test_tune_hands_no_secret_environment_variable_to_trial_actors(monkeypatch):
    from ray.tune.execution import class_cache

    from raysweep.engine.driver import _no_secret_env_vars

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    with _no_secret_env_vars():
        runtime_env = class_cache._ActorClassCache().get(type("T", (), {}))._default_options
    assert AWS_SECRET not in json.dumps(runtime_env.get("runtime_env"), default=str)
    assert "AWS_SECRET_ACCESS_KEY" in class_cache.ENV_VARS_TO_PROPAGATE  # Tune's, restored


# --- an errored trial: exit 3, one line per failure, tracebacks in the log and record ---

@pytest.fixture
def one_mb_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs: Tune's own files fit, a resnet_20 checkpoint (~3 MB) does not."""
    yield from tmpfs(tmp_path, "1m")


@pytest.mark.slow
def test_a_trial_errored_by_a_full_disk_exits_3_with_one_line_and_its_traceback_logged(
        tmp_path, one_mb_disk, join_ray):
    small_disk = one_mb_disk
    path = write_study(tmp_path, "full", defaults={**TINY, "epochs": 2, "train_size": 128,
                                                   "test_size": 64},
                       models=["resnet_20"], asha={"enabled": False},
                       resources={"max_failures": 1})
    run = raysweep("run", path, *join_ray, "--storage", small_disk, timeout=600)
    assert run.returncode == EXIT_TRIALS_ERRORED, run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-2].startswith("raysweep: error: trial resnet_20-s0 (resnet_20-")
    assert " errored after " in lines[-2] and "no space left" in lines[-2]
    assert lines[-1].startswith(f"raysweep: error: 1 of 1 trials errored; tracebacks in "
                                f"{small_disk / 'full' / 'raysweep.log'} and in their records")
    record, = read_records(small_disk / "full")
    # Ray's error file: "Failure # 1 ...", the remote call and its frames, the error
    assert record.status == "errored" and "Failure # 1" in record.traceback
    assert "no space left" in record.traceback


def test_an_errored_record_makes_the_run_exit_3_with_one_line_per_failure(tmp_path, capsys):
    """The decision `raysweep run` makes after Tune returns, on real records (the full-disk
    test above drives it through Ray)."""
    import argparse

    from raysweep.cli import _errored_summary
    from raysweep.store.records import write_record
    from raysweep.study.parse import load_study
    from raysweep.core.trial import TrialRecord

    path = study(tmp_path, models=["resnet_20", "resnet_32"])
    run_dir = tmp_path / "runs" / "s"
    specs = load_study(str(path)).trials()
    args = argparse.Namespace(space=str(path), storage=str(tmp_path / "runs"), local=True)
    for spec, status in zip(specs, ("completed", "stopped")):
        record = TrialRecord.new(spec, "baseline", False, "2026-12-07T00:00:00+00:00")
        record.status = status
        write_record(run_dir, record)
    assert _errored_summary(load_study(str(path)), run_dir, args) == 0
    record.status, record.error = "errored", "StorageFullError: no space left on the device"
    record.traceback = "Traceback (most recent call last): ..."
    write_record(run_dir, record)
    assert _errored_summary(load_study(str(path)), run_dir, args) == EXIT_TRIALS_ERRORED
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"raysweep: error: trial resnet_32-s0 ({record.key}) errored after 0/1 epochs: "
        f"StorageFullError: no space left on the device",
        f"raysweep: error: 1 of 2 trials errored; tracebacks in {run_dir / 'raysweep.log'} and "
        f"in their records; once the cause is fixed, raysweep run {path} --storage "
        f"{tmp_path / 'runs'} --name s --resume --local retries them"]


# --- the command line's own errors: one line naming the fix (issue 27) ---

def usage_error(capsys, *args) -> str:
    """The one line argparse's error prints (exit 2), through `main`."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("command", ["run", "show"])
def test_a_bare_run_or_show_names_the_built_in_studies(capsys, command):
    from raysweep.study.parse import list_spaces

    line = usage_error(capsys, command)
    assert line.startswith(f"raysweep {command}: error: the following arguments are required")
    assert "raysweep list spaces" in line and ", ".join(list_spaces()) in line


@pytest.mark.parametrize("args, fix", [
    (["run", "smoke", "--lcoal"], "did you mean --local?"),
    (["show", "smoke", "--no-estimte"], "did you mean --no-estimate?"),
    (["rnu", "smoke"], "did you mean run?"),
    (["list", "spacse"], "did you mean spaces?"),
    (["run", "smoke", "--frobnicate"], "see raysweep run --help"),
])
def test_a_misspelt_command_or_flag_gets_the_closest_one(capsys, args, fix):
    assert usage_error(capsys, *args).endswith(fix)


@pytest.mark.parametrize("command", ["report", "status"])
def test_a_storage_folder_given_for_a_run_lists_the_runs_inside(tmp_path, capsys, command):
    for name in ("first", "second"):
        (tmp_path / "runs" / name / "records").mkdir(parents=True)
    (tmp_path / "runs" / "not_a_run").mkdir()
    code, line = cli(capsys, command, tmp_path / "runs")
    assert code == 2
    assert line == (f"raysweep: error: '{tmp_path / 'runs'}' is a storage folder, not a run; "
                    f"its runs: first, second; allowed: one of them, e.g. "
                    f"'{tmp_path / 'runs' / 'first'}' (raysweep list runs --storage "
                    f"{tmp_path / 'runs'})")


def test_set_reaches_the_studys_own_keys(tmp_path):
    from raysweep.study.parse import TOP_KEYS, TRAIN_SCHEMA, load_study

    path = study(tmp_path)
    study_ = load_study(str(path), ["seeds=2", "models=[resnet_20, resnet_32]",
                                    "grid.lr=[0.1, 0.2]", "epochs=2"])
    trials = study_.trials()
    assert len(trials) == 2 * 2 * 2
    assert {t.model for t in trials} == {"resnet_20", "resnet_32"}
    assert {t.train.peak_lr for t in trials} == {0.1, 0.2} and {t.train.epochs for t in trials} == {2}
    # A bare key is the study's own when it names one: no defaults key may share a name.
    assert set(TOP_KEYS).isdisjoint(TRAIN_SCHEMA)
