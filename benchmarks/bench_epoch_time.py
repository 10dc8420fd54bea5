"""Seconds per CIFAR-100 epoch of resnet_20 through the whole engine (Tune → TorchTrainer →
worker loop), against the target of 2 s on one H100 and against a plain PyTorch loop over
torchvision's per-sample DataLoader (the papers' set-up) on the same data and device.

    .venv/bin/python -m benchmarks.bench_epoch_time [--epochs 4] [--data-dir DIR]

Without --data-dir it writes 50 000 + 10 000 random images in the exact cifar-100-python
format and reads them with torchvision's CIFAR100 reader (timing does not depend on the
pixels). Paper 002's recipe (SGD, trivialaugment_erasing) at each global batch of
--batches (images per optimizer step; the paper's is 1024 = 128 per GPU on 8 GPUs), its
lr stated for 1024 and scaled linearly to the others (`lr_scaling: linear`), so only 1024
is the paper's optimisation problem; bf16 autocast and channels_last on a GPU. The
engine's figure is the median epoch_seconds of epochs 2..E from the trial records (epoch 1 includes cuDNN autotuning); it includes evaluation on
the 10 000 test images, as a real epoch does."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader

from benchmarks._util import machine, resolved_train
from models import create_model
from raysweep.engine import cluster
from raysweep.training import data
from raysweep.datasets import readers as datasets
from raysweep.datasets import writers
from raysweep.engine.driver import run_study
from raysweep.store.records import read_records
from raysweep.study.parse import load_study
from raysweep.core.trial import TrialRecord

TARGET_SECONDS = 2.0


def engine_epochs(data_dir: Path, args, tmp: Path) -> list[TrialRecord]:
    gpu = torch.cuda.is_available()
    variants = {f"b{b}": {"batch_size": b} for b in args.batches[1:]}
    if args.compile:
        variants.update({f"b{b}-{args.compile}": {"batch_size": b, "compile": args.compile}
                         for b in args.batches})
    path = tmp / "epoch_time.yaml"
    path.write_text(yaml.safe_dump({
        "name": "epoch_time",
        "defaults": {"epochs": args.epochs, "dataset": "cifar100", "data_dir": str(data_dir),
                     "data_checksums": False, "batch_size": args.batches[0],
                     "lr_scaling": "linear", "channels_last": gpu},
        "groups": {"epoch_time": {"baseline": "resnet_20", "variants": {
            name: {"model": "resnet_20", "set": s} for name, s in variants.items()}}},
        "asha": {"enabled": False},
        "resources": {"gpus_per_worker": 1 if gpu else 0, "max_concurrent": 1,
                      "cpus_per_worker": 2}}))
    return read_records(run_study(load_study(str(path)), str(tmp / "runs")))


def plain_epoch(data_dir: Path, workers: int) -> float:
    """One epoch of a hand-written loop over torchvision's per-sample pipeline."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # The whole CIFAR-100 copy at `data_dir`, read as a trial reads it.
    train = resolved_train("sgd", dataset="cifar100", data_dir=str(data_dir),
                           data_checksums=False, pipeline="torchvision")
    images, labels = datasets.load(train, "train")
    ds = data.TensorDataset(images, labels, data.train_transform(
        "trivialaugment_erasing", datasets.info("cifar100")))
    loader = DataLoader(ds, batch_size=128, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = create_model("resnet_20", num_classes=100).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()
    begin = time.perf_counter()
    for x, y in loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - begin


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--data-dir", type=Path, help="a cifar-100-python copy (default: written)")
    ap.add_argument("--batches", type=int, nargs="+", default=[128],
                    help="global batch sizes, one trial each (the lr stated for 1024 is "
                         "scaled linearly)")
    ap.add_argument("--compile", choices=("default", "reduce-overhead", "max-autotune"),
                    help="also run each batch size with torch.compile in this mode")
    ap.add_argument("--loader-workers", type=int, default=8, help="for the plain loop")
    ap.add_argument("--address", help="join this machine's Ray at 127.0.0.1:PORT instead of "
                                      "starting one (as `raysweep run --local --address`)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or writers.write_cifar100(Path(tmp) / "data", 50000, 10000)
        cluster.connect(local=True, address=args.address)
        try:
            records = engine_epochs(root, args, Path(tmp))
        finally:
            cluster.disconnect()
        plain = plain_epoch(root, args.loader_workers)
    where = args.data_dir or "50k/10k random images written in cifar-100-python format"
    print(f"# resnet_20, CIFAR-100 read by torchvision from {where}, "
          f"{args.epochs} epochs; {machine()}")
    for r in sorted(records, key=lambda r: r.labels[0].variant):
        later = r.history[1:] or r.history
        sec = statistics.median(h.epoch_seconds for h in later)
        rate = statistics.median(h.images_per_s for h in later)
        print(f"engine ({r.labels[0].variant:8s}, global batch {r.train.batch_size:4d}, "
              f"peak lr {r.train.peak_lr:g}): {sec:6.2f} s/epoch (train + eval; epoch 1 "
              f"{r.history[0].epoch_seconds:.2f} s), {rate:8.0f} train images/s, "
              f"{sec / TARGET_SECONDS:5.2f}x the {TARGET_SECONDS:g} s target, "
              f"{plain / sec:5.2f}x faster than the plain loop")
    print(f"plain PyTorch loop + DataLoader(torchvision per-sample, {args.loader_workers} "
          f"workers): {plain:6.2f} s/epoch (train only)")


if __name__ == "__main__":
    main()
