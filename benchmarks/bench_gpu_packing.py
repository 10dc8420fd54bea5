"""Aggregate training images/s of 1, 2, 4, 8 resnet_20 trials packed on one GPU
(resources.gpus_per_worker = 1/k), through the whole engine. Needs a GPU.

    .venv/bin/python -m benchmarks.bench_gpu_packing [--epochs 2] [--train-size 50000]

Aggregate = the sum of the trials' images/s in their last epoch (they run side by side)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import ray
import torch
import yaml

from benchmarks._util import machine
from raysweep.engine import cluster
from raysweep.engine.driver import run_study
from raysweep.store.records import read_records
from raysweep.study.parse import load_study


def run_packed(k: int, args, tmp: Path, cpus: float) -> tuple[float, float]:
    path = tmp / f"pack{k}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"pack{k}", "models": ["resnet_20"], "seeds": k,
        "defaults": {"epochs": args.epochs, "dataset": "synthetic", "synthetic_classes": 100,
                     "train_size": args.train_size, "test_size": 10000, "batch_size": 128,
                     "channels_last": True},
        "asha": {"enabled": False},
        "resources": {"gpus_per_worker": 1 / k, "cpus_per_worker": min(1.0, cpus / k)}}))
    timings: dict = {}
    records = read_records(run_study(load_study(str(path)), str(tmp / "runs"), timings=timings))
    last = sum(r.history[-1].images_per_s for r in records)
    return last, timings["tune_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=50000)
    ap.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu_packing: no GPU here; this benchmark needs one")
    cluster.connect(local=True, address=None)
    try:
        cpus = ray.cluster_resources()["CPU"]
        print(f"# resnet_20, batch 128, {args.train_size} synthetic images, "
              f"{args.epochs} epochs, bf16, channels_last; {machine()}")
        single = None
        with tempfile.TemporaryDirectory() as tmp:
            for k in args.packs:
                rate, wall = run_packed(k, args, Path(tmp), cpus)
                single = single or rate
                print(f"{k} trial(s) per GPU: {rate:9.0f} images/s aggregate  "
                      f"{rate / single:5.2f}x one trial  (Tune wall {wall:.0f} s)", flush=True)
    finally:
        cluster.disconnect()


if __name__ == "__main__":
    main()
