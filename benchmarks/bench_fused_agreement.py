"""Do fused members train like separate trials? Final test top-1 of k seeds trained one
by one (`worker.Loop`, the engine's separate-trial loop) against the same k seeds as one
fused array (`fusion.FusedTrainer`), same data, recipe and epochs, as distributions.

    .venv/bin/python -m benchmarks.bench_fused_agreement [--members 4] [--epochs 3]
        [--train-size 20000] [--test-size 5000] [--batch 128] [--model resnet_20]

On a GPU `amp: auto` is bf16 autocast, where the fused (vmapped, grouped) kernels round
differently from the separate ones, so members cannot match their separate trials bit for
bit (in float64 on the CPU they do, to 1e-9: tests/training/test_fusion.py); what must hold is
agreement in distribution: the difference of the means within 2 standard errors (Welch)
of the per-seed final test top-1. The data is the learnable synthetic set (100 classes),
whose top-1 stays well below 100%: random CIFAR-format pixels would leave both sides at
chance, agreeing about nothing."""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from benchmarks._util import machine, resolved_train
from raysweep.training import data, fusion, worker
from raysweep.decide.stats import welch
from raysweep.core.trial import ArmLabel, TrialSpec


def specs(args) -> list[TrialSpec]:
    t = resolved_train("sgd", dataset="synthetic", synthetic_classes=100,
                       train_size=args.train_size, test_size=args.test_size,
                       batch_size=args.batch, epochs=args.epochs, augment="basic", amp="auto",
                       pipeline="tensor")
    return [TrialSpec("bench_fused_agreement", args.model, {}, seed, t,
                      (ArmLabel(None, args.model, False),)) for seed in range(args.members)]


def separate(members, splits, steps, device) -> list[float]:
    finals = []
    for spec in members:
        opt = fusion.new_shadow(spec, splits.classes, steps)
        opt.model.to(device)
        amp = worker.amp_dtype(spec.train.amp, device)
        loop = worker.Loop(spec, opt, opt.model, splits, steps, device, amp, 0, 1)
        finals.append([loop.epoch(e, 0) for e in range(1, spec.train.epochs + 1)][-1].test_top1)
    return finals


def fused(members, splits, steps, device) -> list[float]:
    shadows = [fusion.Member(s, fusion.new_shadow(s, splits.classes, steps), [], [])
               for s in members]
    array = fusion.FusedTrainer(shadows, splits, steps, device)
    results = [array.epoch(e) for e in range(1, members[0].train.epochs + 1)]
    return [r.test_top1 for r in results[-1]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=4, help="seeds per side")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=20000)
    ap.add_argument("--test-size", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default="resnet_20")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    members = specs(args)
    splits = data.prepare(members[0].train, device)
    steps = data.steps_per_epoch(len(splits.train), args.batch)
    amp = worker.amp_dtype(members[0].train.amp, device)
    print(f"# bench_fused_agreement: {args.members} seeds × {args.model}, {args.epochs} epochs, "
          f"synthetic 100 classes, {len(splits.train)}/{args.test_size} images, batch "
          f"{args.batch}, autocast {amp or 'off'}; {machine()}", flush=True)
    begin = time.perf_counter()
    sep = separate(members, splits, steps, device)
    mid = time.perf_counter()
    fus = fused(members, splits, steps, device)
    end = time.perf_counter()
    for seed, (s, f) in enumerate(zip(sep, fus)):
        print(f"seed {seed}: separate {s:6.2f}  fused {f:6.2f}  (test top-1 %, epoch "
              f"{args.epochs})")
    c = welch(fus, sep)
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    se = math.sqrt(sd(sep) ** 2 / len(sep) + sd(fus) ** 2 / len(fus))
    agree = abs(c.delta) <= 2 * se if se > 0 else c.delta == 0
    print(f"separate {statistics.mean(sep):.2f} ± {sd(sep):.2f}, fused "
          f"{statistics.mean(fus):.2f} ± {sd(fus):.2f} (mean ± std, n={len(sep)} a side); "
          f"fused − separate {c.delta:+.2f} ± {se:.2f} (SE), Welch p={c.p:.2g}")
    print(f"agreement: {'yes' if agree else 'NO'} (|Δ| ≤ 2 SE); wall separate "
          f"{mid - begin:.1f} s, fused {end - mid:.1f} s")


if __name__ == "__main__":
    main()
