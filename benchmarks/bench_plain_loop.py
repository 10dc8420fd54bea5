"""Does raysweep train like a standard PyTorch loop? One model, one recipe, the same real
data (Fashion-MNIST), n seeds per side:

    plain          torchvision's `FashionMNIST` dataset class, torchvision transforms
                   (Pad, Grayscale, RandomCrop, RandomHorizontalFlip, ToTensor, Normalize,
                   and TrivialAugmentWide / RandomErasing at those levels), a DataLoader,
                   torch.optim SGD or AdamW, CosineAnnealingLR stepped per step: the loop
                   a PyTorch tutorial writes
    inline         `raysweep run STUDY --local` (each trial inside its Tune process)
    train-workers  `raysweep run STUDY --local --train-workers` (a Ray Train worker group)

Both sides train on the same images (the first --train-size training images less the
stratified validation split, `raysweep.datasets.readers.stratified_split` with --split-seed)
and test on the same test images, with the same model constructor, global batch, peak
lr, weight decay, momentum, label smoothing, augmentation level and epoch count. Seeds
differ in their random streams (initial weights, order, augmentation draws), so the two
sides are compared as distributions: mean ± std of the final epoch's test top-1 over
the seeds, and the difference of the means with its standard error
sqrt(s_a²/n_a + s_b²/n_b); they agree when |difference| <= 2 standard errors. Nothing
is selected on the test split: the final epoch is reported, whatever it scored.

    .venv/bin/python -m benchmarks.bench_plain_loop --train-size 10000 --epochs 5 --seeds 3
    .venv/bin/python -m benchmarks.bench_plain_loop --sides plain --train-size 2000 --epochs 1

Fashion-MNIST is found as raysweep finds it (`apt-get install dataset-fashion-mnist`, or
--data-dir); the plain side unpacks the .gz files into torchvision's folder layout (as
torchvision's own download does) under --out, since `FashionMNIST` reads only that.
Measured 2026-12-06 on the 2-core CPU machine, otherwise idle (benchmarks/README.md;
raw outputs in benchmarks/results/cpu-2026-12-06/): `--train-size 5000 --test-size 2000
--epochs 4 --seeds 5` gave test top-1 plain 76.09 ± 0.67 (n=5), inline and train-workers
76.54 ± 0.66 (n=5, the same numbers seed for seed: one loop): +0.45 pp, standard error
0.42, within 2 standard errors (wall time: plain 327 s, inline 257 s, train-workers 356 s).
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from torch.utils.data import DataLoader, Subset
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from benchmarks._util import machine
from models import create_model
from raysweep.datasets import readers as datasets

SIDES = ("plain", "inline", "train-workers")
AUGMENTS = ("basic", "trivialaugment", "trivialaugment_erasing")


def main() -> None:
    args = parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folder = datasets.fashion_mnist_folder(args.data_dir)
    if folder is None:
        sys.exit(f"bench_plain_loop: Fashion-MNIST not found under {args.data_dir!r} nor "
                 f"{datasets.SYSTEM_FASHION_MNIST}; apt-get install dataset-fashion-mnist")
    print(f"bench_plain_loop: {machine()}")
    print(f"  {args.model} on fashion_mnist from {folder}: {describe(args)}", flush=True)
    results = {}
    for side in args.sides:
        begin = time.perf_counter()
        results[side] = (plain_side(args, folder, out) if side == "plain"
                         else raysweep_side(args, side, out))
        print(f"  {side}: {len(results[side])} seeds in {time.perf_counter() - begin:.0f} s",
              flush=True)
    report(results)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet_20")
    ap.add_argument("--train-size", type=int, default=10_000,
                    help="first N training images, before the validation split")
    ap.add_argument("--test-size", type=int, default=None, help="first N test images (all)")
    ap.add_argument("--val-fraction", type=float, default=datasets.info("fashion_mnist").val_fraction)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per side")
    ap.add_argument("--batch-size", type=int, default=128, help="global: images per step")
    ap.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    ap.add_argument("--lr", type=float, default=0.05, help="peak lr per step (cosine to 0)")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    ap.add_argument("--weight-decay", type=float, default=5e-4,
                    help="per step: L2 (SGD) or decoupled (AdamW)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--augment", choices=AUGMENTS, default="basic")
    ap.add_argument("--sides", default=",".join(SIDES),
                    type=lambda s: [x for x in s.split(",") if x],
                    help=f"comma list of {', '.join(SIDES)}")
    ap.add_argument("--data-dir", default="~/.cache/raysweep/data")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads of the plain side")
    ap.add_argument("--out", default="runs/bench_plain_loop",
                    help="the generated study, the raysweep runs, the unpacked files")
    args = ap.parse_args()
    unknown = [s for s in args.sides if s not in SIDES]
    if unknown:
        ap.error(f"--sides {unknown[0]!r}; allowed: {', '.join(SIDES)}")
    return args


def describe(args) -> str:
    recipe = (f"SGD momentum {args.momentum}" if args.optimizer == "sgd" else "AdamW (0.9, 0.999)")
    return (f"first {args.train_size} training images, {args.val_fraction:.4f} held out "
            f"(split seed {args.split_seed}), test {args.test_size or 'all'}; {args.epochs} "
            f"epochs, global batch {args.batch_size}, {recipe}, peak lr {args.lr} cosine per "
            f"step, weight decay {args.weight_decay}, label smoothing {args.label_smoothing}, "
            f"augment {args.augment}; seeds 0..{args.seeds - 1}")


# --- the plain side: what a PyTorch tutorial writes ---

def plain_side(args, folder: Path, out: Path) -> list[dict]:
    torch.set_num_threads(args.threads)
    root = torchvision_root(folder, out / "torchvision-root")
    mean, std = datasets.info("fashion_mnist").mean, datasets.info("fashion_mnist").std
    to_zoo = [T.Pad(datasets.PAD), T.Grayscale(num_output_channels=3)]
    train_tf = T.Compose(to_zoo + plain_augment(args.augment, mean, std))
    eval_tf = T.Compose(to_zoo + [T.ToTensor(), T.Normalize(mean, std)])
    train_all = tv_datasets.FashionMNIST(str(root), train=True, transform=train_tf)
    eval_all = tv_datasets.FashionMNIST(str(root), train=True, transform=eval_tf)
    test_all = tv_datasets.FashionMNIST(str(root), train=False, transform=eval_tf)
    keep, held = datasets.stratified_split(train_all.targets[:args.train_size],
                                           args.val_fraction, args.split_seed)
    train_set, val_set = Subset(train_all, keep.tolist()), Subset(eval_all, held.tolist())
    test_set = Subset(test_all, range(min(args.test_size or len(test_all), len(test_all))))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return [plain_seed(args, seed, train_set, val_set, test_set, device)
            for seed in range(args.seeds)]


def plain_augment(level: str, mean, std) -> list:
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if level in ("trivialaugment", "trivialaugment_erasing"):
        ops.append(T.TrivialAugmentWide())
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if level == "trivialaugment_erasing":
        ops.append(T.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0))
    return ops


def plain_seed(args, seed: int, train_set, val_set, test_set, device) -> dict:
    torch.manual_seed(seed)
    model = create_model(args.model, num_classes=10).to(device)
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    for _ in range(args.epochs):
        model.train()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            loss = criterion(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return {"seed": seed, "test_top1": top1(model, test_set, device),
            "val_top1": top1(model, val_set, device) if len(val_set) else None}


@torch.no_grad()
def top1(model: nn.Module, dataset, device) -> float:
    model.eval()
    hits = 0
    for images, labels in DataLoader(dataset, batch_size=256):
        hits += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
    return 100 * hits / len(dataset)


def torchvision_root(folder: Path, staging: Path) -> Path:
    """A root `FashionMNIST` reads as is: the data's own when its files are unpacked in
    torchvision's layout, else `staging` with the .gz files unpacked into it."""
    names = datasets.FASHION_MNIST_MD5
    if folder.parts[-2:] == ("FashionMNIST", "raw") and all((folder / n).is_file() for n in names):
        return folder.parent.parent
    raw = staging / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (raw / name).is_file():
            source = folder / name
            if source.is_file():
                shutil.copyfile(source, raw / name)
            else:
                with gzip.open(folder / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return staging


# --- the raysweep side: the CLI, as a user runs it ---

def raysweep_side(args, side: str, out: Path) -> list[dict]:
    from raysweep.store.records import read_records

    study = write_study(args, out / "plain_loop.yaml")
    cmd = [sys.executable, "-m", "raysweep.cli", "run", str(study), "--local",
           "--storage", str(out / "runs"), "--name", side]
    if side == "train-workers":
        cmd.append("--train-workers")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_plain_loop: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    records = [r for r in read_records(out / "runs" / side) if r.status == "completed"]
    return [{"seed": r.seed, "test_top1": r.history[-1].test_top1,
             "val_top1": r.history[-1].val_top1} for r in sorted(records, key=lambda r: r.seed)]


def write_study(args, path: Path) -> Path:
    """The same recipe as a study (the new format: global batch, peak lr at that batch)."""
    study = {
        "name": "plain_loop",
        "description": "bench_plain_loop: raysweep's side of the plain-loop comparison",
        "defaults": {
            "dataset": "fashion_mnist", "data_dir": str(Path(args.data_dir).expanduser()),
            "train_size": args.train_size, "test_size": args.test_size,
            "val_fraction": args.val_fraction, "split_seed": args.split_seed,
            "epochs": args.epochs, "batch_size": args.batch_size,
            "recipe": args.optimizer, "lr": args.lr, "lr_scaling": "none",
            "weight_decay": args.weight_decay, "scheduler": "cosine", "warmup_epochs": 0,
            "label_smoothing": args.label_smoothing, "augment": args.augment,
            "amp": "off",  # the plain side runs in float32
            **({"momentum": args.momentum} if args.optimizer == "sgd" else {}),
        },
        "models": [args.model],
        "seeds": args.seeds,
        "asha": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


# --- the comparison ---

def report(results: dict[str, list[dict]]) -> None:
    print(f"\n{'side':<14} {'n':>2}  {'test top-1 (%)':>16}  {'val top-1 (%)':>16}  test per seed")
    for side, rows in results.items():
        test = [r["test_top1"] for r in rows]
        val = [r["val_top1"] for r in rows if r["val_top1"] is not None]
        print(f"{side:<14} {len(rows):>2}  {mean_std(test):>16}  {mean_std(val):>16}  "
              + " ".join(f"{t:.2f}" for t in test))
    base = [r["test_top1"] for r in results.get("plain", [])]
    for side, rows in results.items():
        if side == "plain" or len(base) < 2 or len(rows) < 2:
            continue
        test = [r["test_top1"] for r in rows]
        diff = statistics.mean(test) - statistics.mean(base)
        se = math.sqrt(statistics.variance(test) / len(test) + statistics.variance(base) / len(base))
        verdict = "yes" if abs(diff) <= 2 * se else "NO: find out why"
        print(f"{side} − plain: {diff:+.2f} pp test top-1 (standard error {se:.2f}); "
              f"within 2 standard errors: {verdict}")
    print(json.dumps({"results": results}))


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


if __name__ == "__main__":
    main()
