"""benchmarks/gpu_check.sh rehearsed on the CPU (`--dry-run`: every step at tiny sizes,
the summary read from their raw outputs), so that the one-command GPU check a lent GPU
machine runs cannot break unnoticed between the rare sessions that have one."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = ["env", "data", "fusion_m2", "eca_fused", "eca_separate", "epoch_time", "agreement",
         "gpu_tests"]
MEASURED = ("training images/s", "s per epoch", "eca_kernel", "bf16", "GPU-only tests")


@pytest.mark.slow
def test_dry_run_runs_every_step_and_summarises_their_outputs(tmp_path, join_ray):
    results, out = tmp_path / "cpu-dryrun", tmp_path / "out"
    out.mkdir()
    # The steps that run studies join the session's Ray (`--local --address`).
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out),
           "GPU_CHECK_RAY_ADDRESS": join_ray[-1]}
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--results",
                           str(results), "--budget", "1500"], capture_output=True, text=True,
                          env=env, timeout=1600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = dict(line.split("\t")[:2] for line in
                 (results / "steps.tsv").read_text().splitlines())
    assert steps == {name: "0" for name in STEPS}, steps
    assert {f"{name}.txt" for name in STEPS} <= {p.name for p in results.iterdir()}
    # 6 arms × 2 seeds, of which adaptive and k3 are one network (trained once): 5 × 2
    assert len(list((results / "eca_fused_records").glob("*.json"))) == 10
    assert '"runner": "fused"' in "".join(
        p.read_text() for p in (results / "eca_fused_records").glob("*.json"))
    # The summary table is printed last, one row per goal with a figure from the outputs.
    summary = proc.stdout[proc.stdout.rindex("summary ("):].splitlines()
    for goal in MEASURED:
        [line] = [ln for ln in summary if goal in ln]
        assert "not measured" not in line, line
    assert any(ln.startswith("fusion decision") for ln in summary)
    # The device tool brings back what is under $OUT: the whole folder and the summary.
    with tarfile.open(out / "cpu-dryrun.tar.gz") as tar:
        assert "cpu-dryrun/steps.tsv" in tar.getnames()
    assert (out / "summary.txt").read_text() == (results / "summary.txt").read_text()


def test_a_bad_argument_is_one_line_and_exit_2():
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--budget", "soon"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "'soon'" in proc.stderr
