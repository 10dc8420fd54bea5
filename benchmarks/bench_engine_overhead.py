"""Per-trial fixed cost of the engine for short trials: Ray start, trial launch,
worker-group set-up and teardown, i.e. everything that is not training or evaluation.

    .venv/bin/python -m benchmarks.bench_engine_overhead [--trials 4]

Runs a study of `--trials` one-epoch resnet_20 trials on a small synthetic set, one at
a time, and splits the wall time with the records (setup_seconds, epoch_seconds) and
run_study's timings (tune_seconds)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._util import machine
from raysweep import cluster
from raysweep.driver import run_study
from raysweep.records import read_records
from raysweep.study import load_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.yaml"
        path.write_text(yaml.safe_dump({
            "name": "overhead", "models": ["resnet_20"], "seeds": args.trials,
            "defaults": {"epochs": 1, "dataset": "synthetic", "train_size": 512, "test_size": 256,
                         "batch_size": 64, "augment": "basic"},
            "asha": {"enabled": False}, "resources": {"max_concurrent": 1}}))
        begin = time.perf_counter()
        cluster.connect(local=True, address=None)
        ray_start = time.perf_counter() - begin
        timings: dict = {}
        run_dir = run_study(load_study(str(path)), str(Path(tmp) / "runs"), timings=timings)
        begin = time.perf_counter()
        cluster.disconnect()
        ray_stop = time.perf_counter() - begin
        records = read_records(run_dir)
    epoch = [h["epoch_seconds"] for r in records for h in r["history"]]
    setup = [s for r in records for s in r.get("setup_seconds") or []]
    per_trial = timings["tune_seconds"] / len(records)
    print(f"# {len(records)} one-epoch resnet_20 trials (512 synthetic images), one at a time; "
          f"{machine()}")
    print(f"Ray start (local, with dashboard)       {ray_start:7.2f} s once per run")
    print(f"Ray shutdown                            {ray_stop:7.2f} s once per run")
    print(f"Tune wall time per trial                {per_trial:7.2f} s")
    print(f"  training + evaluation (epoch_seconds) {statistics.mean(epoch):7.2f} s")
    print(f"  launch → first epoch (setup_seconds)  {statistics.mean(setup):7.2f} s "
          f"(worker group, data, model)")
    print(f"  fixed cost per trial (wall - epochs)  {per_trial - statistics.mean(epoch):7.2f} s "
          f"(of which after the last epoch: {per_trial - statistics.mean(epoch) - statistics.mean(setup):.2f} s)")


if __name__ == "__main__":
    main()
