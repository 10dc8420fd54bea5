"""The engine's train loop (raysweep.training.worker.Loop.train_epoch, set up by worker.build) vs a
hand-written plain PyTorch loop: same model (resnet_20, same initial weights), same
batches, same batch size.

    .venv/bin/python -m benchmarks.bench_train_loop [--steps 12] [--repeats 3]

Both loops read the same TensorLoader (data on the device, batched augmentation), so
the ratio is the loop's own cost (scheduler, grad scaler, loss bookkeeping). A third
case is the usual plain PyTorch set-up: a DataLoader with torchvision's per-sample
transforms, one process per worker's CPU."""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from benchmarks._util import interleaved, machine, resolved_train
from models import create_model
from raysweep.training import augment, data, worker
from raysweep.datasets import readers as datasets
from raysweep.core.trial import ArmLabel, TrainConfig, TrialSpec

AUGMENT = "trivialaugment_erasing"


def train_config(batch: int, device) -> TrainConfig:
    """The study defaults under the sgd recipe (peak lr 0.1, as the plain loop's), at a
    global batch of `batch` on one worker, with no validation split."""
    return resolved_train("sgd", dataset="synthetic", synthetic_classes=100, batch_size=batch,
                          epochs=10, augment=AUGMENT, amp="auto",
                          channels_last=device.type == "cuda", pipeline="tensor")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = train_config(args.batch, device)
    n = args.steps * args.batch
    images, labels = datasets.synthetic(100, n, "train")
    info = datasets.info("synthetic")
    split = data.DeviceSplit(images, labels, device,
                             augment.BatchAugment(AUGMENT, info.mean, info.std))
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    amp = worker.amp_dtype(t.amp, device)
    base = create_model("resnet_20", num_classes=100).to(device, memory_format=fmt)

    def batches():
        # One worker's share of every global batch (all of it), in order, as an epoch's.
        return data.train_batches(split, torch.arange(n), args.batch, 0, 1, 0, 0)

    # The engine's own set-up (worker.build) and loop (worker.Loop), from base's weights.
    spec = TrialSpec("bench_train_loop", "resnet_20", {}, 0, t,
                     (ArmLabel(None, "resnet_20", False),))
    opt = worker.build(spec, t, 100, args.steps, device, world=1)
    opt.model.load_state_dict(base.state_dict())
    loop = worker.Loop(spec, opt, opt.model, data.Splits(split, None, split, 100), args.steps,
                       device, amp, 0, 1)
    crit = nn.CrossEntropyLoss()

    def engine() -> int:
        loop.train_epoch(batches())
        return n

    plain_model = copy.deepcopy(base)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def plain(loader) -> int:
        plain_model.train()
        seen = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = crit(plain_model(x), y)
            plain_opt.zero_grad(set_to_none=True)
            loss.backward()
            plain_opt.step()
            seen += len(x)
        return seen

    per_sample = DataLoader(data.TensorDataset(images, labels, data.train_transform(AUGMENT, info)),
                            batch_size=args.batch, shuffle=True, drop_last=True, num_workers=1,
                            pin_memory=device.type == "cuda", persistent_workers=True)
    engine(), plain(batches())  # warm-up (allocator, cuDNN autotune)
    rates = interleaved({"engine train_epoch + TensorLoader": engine,
                         "plain PyTorch loop + TensorLoader": lambda: plain(batches()),
                         "plain PyTorch loop + DataLoader(torchvision per-sample, 1 proc)":
                             lambda: plain(per_sample)}, args.repeats, device)
    print(f"# resnet_20, batch {args.batch}, {args.steps} steps, augment {AUGMENT}, "
          f"device {device}, {torch.get_num_threads()} threads; {machine()}")
    ref = rates["plain PyTorch loop + TensorLoader"]
    for name, r in rates.items():
        print(f"{name:64s} {r:9.0f} images/s  {r / ref:5.3f}x plain loop")


if __name__ == "__main__":
    main()
