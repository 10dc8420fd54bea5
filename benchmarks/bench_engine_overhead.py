"""Per-trial fixed cost of the engine for short trials: Ray start, trial launch,
worker-group set-up and teardown, i.e. everything that is not training or evaluation.

    .venv/bin/python -m benchmarks.bench_engine_overhead [--trials 4]

Runs the same study of `--trials` one-epoch resnet_20 trials on a small synthetic set,
one trial at a time, twice on one local Ray: with `--local`'s inline trials (the loop
runs in the trial's Tune process) and with a Ray Train worker group per trial (as on a
cluster, `--train-workers`). The wall time is split with the records (setup_seconds,
epoch_seconds) and run_study's timings (tune_seconds)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._util import machine
from raysweep.engine import cluster
from raysweep.engine.driver import run_study
from raysweep.store.records import read_records
from raysweep.study.parse import load_study


def measure(path: Path, storage: Path, inline: bool) -> dict[str, float]:
    timings: dict = {}
    records = read_records(run_study(load_study(str(path)), str(storage), name=f"inline{inline}",
                                     timings=timings, inline=inline))
    assert {s.runner for r in records for s in r.segments} == {
        "inline" if inline else "train-workers"}
    epoch = statistics.mean(h.epoch_seconds for r in records for h in r.history)
    setup = statistics.mean(s.setup_seconds for r in records for s in r.segments
                            if s.setup_seconds is not None)
    per_trial = timings["tune_seconds"] / len(records)
    return {"trials": len(records), "per_trial": per_trial, "epoch": epoch, "setup": setup,
            "fixed": per_trial - epoch}


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
        try:
            runs = {"inline (--local)": measure(path, Path(tmp) / "runs", True),
                    "Train workers (--train-workers)": measure(path, Path(tmp) / "runs", False)}
        finally:
            begin = time.perf_counter()
            cluster.disconnect()
            ray_stop = time.perf_counter() - begin
    print(f"# {args.trials} one-epoch resnet_20 trials (512 synthetic images), one at a time; "
          f"{machine()}")
    print(f"Ray start (local, with dashboard) {ray_start:6.2f} s, shutdown {ray_stop:5.2f} s, "
          "once per run")
    print(f"{'runner':32s} {'wall/trial':>10s} {'epoch':>7s} {'fixed':>7s} {'launch→epoch 1':>15s}")
    for name, m in runs.items():
        print(f"{name:32s} {m['per_trial']:9.2f}s {m['epoch']:6.2f}s {m['fixed']:6.2f}s "
              f"{m['setup']:14.2f}s")
    inline, train = runs.values()
    print(f"fixed cost per trial: inline {inline['fixed']:.2f} s = "
          f"{inline['fixed'] / train['fixed']:.2f}x the Train-worker path's {train['fixed']:.2f} s")


if __name__ == "__main__":
    main()
