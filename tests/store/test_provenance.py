"""No secret leaves through provenance: the command line and the resolved study are
stored redacted, environment variables never, and reports inherit the redacted form."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from raysweep.store.redact import MASK, redact, redact_text
from raysweep.store.provenance import write_provenance
from raysweep.store.storage import RemotePath, run_location

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SECRET_IN_URI = AWS_SECRET.replace("/", "%2F")  # what pyarrow parses
QUERY_TOKEN = "qt-7f3a9c2e51d84b06"
GITHUB_TOKEN = "ghp_R4nd0mL00k1ngT0kenV4lue0123456789"
ENV_SECRET = "env-secret-5d1c0a7e9b"


@pytest.mark.parametrize("arg, redacted", [
    (f"s3://{AWS_KEY_ID}:{AWS_SECRET}@bucket/runs?region=us-east-1",
     f"s3://{MASK}@bucket/runs?{MASK}"),
    (f"file:///tmp/runs?token={QUERY_TOKEN}#part", f"file:///tmp/runs?{MASK}"),
    ("https://user:hunter2@example.org/x", f"https://{MASK}@example.org/x"),
    ("api_token=hunter2", f"api_token={MASK}"),
    ("defaults.secret_key=abc", f"defaults.secret_key={MASK}"),
    (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", f"AWS_SECRET_ACCESS_KEY={MASK}"),
    (f"groups.g.description=deploy with {GITHUB_TOKEN}",
     f"groups.g.description=deploy with {MASK}"),
    (f"data_dir=/data/{AWS_KEY_ID}", f"data_dir=/data/{MASK}"),
    ("Authorization: Bearer abc.def.ghi-123", f"Authorization: {MASK} {MASK}"),
    ("description=run 7Kq2ZxW9vB4mN8pL3rT6yH1", f"description=run {MASK}"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", MASK),
    # ordinary arguments stay as they are
    ("lr=0.05", "lr=0.05"), ("asha.grace_period=2", "asha.grace_period=2"),
    ("search_spaces/ablations.yaml", "search_spaces/ablations.yaml"),
    ("/home/Alice/Data2024/cifar100", "/home/Alice/Data2024/cifar100"),
    ("resnet_20-3fa2c9d1e0", "resnet_20-3fa2c9d1e0"), ("s3://bucket/runs", "s3://bucket/runs"),
    ("keyboard=1", "keyboard=1"),
])
def test_redact_removes_credentials_and_keeps_the_rest(arg, redacted):
    assert redact(["raysweep", "run", arg]) == ["raysweep", "run", redacted]


def test_the_argument_after_a_secret_flag_is_masked():
    assert redact(["tool", "--password", "pw", "--token", "t", "--name", "n"]) == \
        ["tool", "--password", MASK, "--token", MASK, "--name", "n"]
    assert redact_text("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----") \
        == MASK


def test_no_secret_reaches_a_file_of_the_run_folder_or_its_report(tmp_path, monkeypatch):
    from raysweep.results import export
    from raysweep.study.parse import load_study

    monkeypatch.setenv("RAYSWEEP_TEST_API_TOKEN", ENV_SECRET)  # a secret in the environment
    study_path = tmp_path / "leak.yaml"
    study_path.write_text(yaml.safe_dump({
        "name": "leak", "defaults": {"epochs": 1, "dataset": "synthetic"},
        "groups": {"g": {"baseline": "resnet_20", "variants": {"deeper": "resnet_32"}}}}))
    token_set = f"groups.g.description=deploy with {GITHUB_TOKEN}"
    study = load_study(str(study_path), [token_set])

    local = f"file://{tmp_path}/runs?token={QUERY_TOKEN}"
    run_dir = run_location(local, "leak")
    assert run_dir == tmp_path / "runs" / "leak"
    s3 = f"s3://{AWS_KEY_ID}:{AWS_SECRET_IN_URI}@bucket/runs?region=us-east-1"
    remote = run_location(s3, "leak")  # no cloud access: the region is given
    assert isinstance(remote, RemotePath) and str(remote) == "s3://bucket/runs/leak"

    for storage in (local, s3):  # two runs of the study, provenance appended per run
        write_provenance(run_dir, study, argv=["raysweep", "run", str(study_path), "--storage",
                                               storage, "--set", token_set])
    runs = json.loads((run_dir / "provenance.json").read_text())["runs"]
    assert [r["argv"][4] for r in runs] == [f"file://{tmp_path}/runs?{MASK}",
                                            f"s3://{MASK}@bucket/runs?{MASK}"]
    assert runs[0]["argv"][6] == f"groups.g.description=deploy with {MASK}"
    assert yaml.safe_load((run_dir / "study.yaml").read_text())["groups"]["g"]["description"] \
        == f"deploy with {MASK}"

    report = export.write_provenance(run_dir, run_dir / "report", [], [])
    assert {p.name for p in report} == {"provenance.md", "provenance.json"}
    # Markdown escapes the mask so that it does not render as emphasis.
    escaped = MASK.replace("*", r"\*")
    assert f"s3://{escaped}@bucket" in (run_dir / "report" / "provenance.md").read_text()
    _assert_nothing_leaked(run_dir, [AWS_KEY_ID, AWS_SECRET_IN_URI, QUERY_TOKEN, GITHUB_TOKEN,
                                     ENV_SECRET])


def test_an_older_unredacted_provenance_is_redacted_when_appended_to(tmp_path):
    from raysweep.study.parse import load_study

    old = {"study": "smoke", "runs": [{"argv": ["raysweep", "run", "smoke", "--storage",
                                                f"s3://{AWS_KEY_ID}:{AWS_SECRET}@b/r"]}]}
    (tmp_path / "provenance.json").write_text(json.dumps(old))
    write_provenance(tmp_path, load_study("smoke"), argv=["raysweep", "run", "smoke"])
    runs = json.loads((tmp_path / "provenance.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0]["argv"][-1] == f"s3://{MASK}@b/r"
    _assert_nothing_leaked(tmp_path, [AWS_KEY_ID, AWS_SECRET])


def test_a_later_round_of_one_command_updates_its_entry_instead_of_adding_one(tmp_path):
    """Adaptive seeds run rounds in one `raysweep run`: one entry (one started_at, the
    elapsed time `status` shows), its trial count raised to what the run now holds."""
    from raysweep.study.parse import load_study

    study = load_study("smoke")
    write_provenance(tmp_path, study, argv=["raysweep", "run", "smoke"], lanes=2)
    first = json.loads((tmp_path / "provenance.json").read_text())["runs"]
    study.seeds = [0, 1, 2]
    write_provenance(tmp_path, study, argv=["raysweep", "run", "smoke"], lanes=3,
                     same_sitting=True)
    [entry] = json.loads((tmp_path / "provenance.json").read_text())["runs"]
    assert entry["started_at"] == first[0]["started_at"]
    assert entry["trials_total"] == 3 * first[0]["trials_total"]
    assert entry["max_concurrent"] == 3


def _assert_nothing_leaked(folder: Path, secrets: list[str]) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    leaks = [(str(p.relative_to(folder)), s) for p in files for s in secrets
             if s.encode() in p.read_bytes()]
    assert leaks == []


# --- end to end, through the CLI (after the lead's rewrite of run/report is merged) ---

@pytest.mark.slow
def test_raysweep_run_and_report_leave_no_credential_under_the_run_folder(tmp_path, join_ray):
    from support.studies import TINY, write_study
    from support.cli import raysweep

    path = write_study(tmp_path, "leak", defaults={**TINY, "epochs": 1, "train_size": 128,
                                                    "test_size": 64},
                       groups={"g": {"baseline": "resnet_20",
                                     "variants": {"slow": {"model": "resnet_20",
                                                           "set": {"lr": 0.001}}}}},
                       asha={"enabled": False})
    storage = f"file://{tmp_path}/runs?token={QUERY_TOKEN}"
    # Ray's own folder for this run (short: it holds Unix sockets), to grep it too.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    run = raysweep("run", path, "--local", "--storage", storage,
                       "--set", f"groups.g.description=deploy with {GITHUB_TOKEN}",
                       env={**os.environ, "RAYSWEEP_TEST_API_TOKEN": ENV_SECRET,
                            "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                            "RAY_TMPDIR": str(ray_tmp)})
    assert run.returncode == 0, run.stderr[-3000:]
    sessions = list(ray_tmp.glob("ray/session_*"))
    assert sessions, "Ray wrote no session folder under RAY_TMPDIR"
    try:  # Tune handed AWS_SECRET_ACCESS_KEY to trial actors; Ray logged it 7 times
        _assert_nothing_leaked(ray_tmp, [AWS_SECRET, AWS_KEY_ID, QUERY_TOKEN, GITHUB_TOKEN,
                                         ENV_SECRET])
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert QUERY_TOKEN not in run.stdout + run.stderr
    run_dir = tmp_path / "runs" / "leak"
    report = raysweep("report", run_dir)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (run_dir / "report" / "provenance.md").is_file()
    _assert_nothing_leaked(run_dir, [QUERY_TOKEN, GITHUB_TOKEN, ENV_SECRET, AWS_SECRET])


def test_the_versions_read_without_importing_are_the_imported_modules_versions():
    """provenance.json names torch, torchvision and timm as their `__version__` says (the
    CUDA build's tag included), read from their files so that a driver imports none."""
    import timm
    import torch
    import torchvision

    from raysweep.store.provenance import environment

    found = environment()
    assert [found[m.__name__] for m in (torch, torchvision, timm)] == \
        [m.__version__ for m in (torch, torchvision, timm)]
