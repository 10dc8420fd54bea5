"""k trials of one architecture on one device: a fused array (raysweep.fusion) against the
same k trials one after another (sequential) and all at once in k processes (packed, as
Ray packs trials with a GPU share each).

    .venv/bin/python -m benchmarks.bench_fusion [--members 3] [--model resnet_20]
        [--batch 128] [--steps 20] [--repeats 3] [--compile MODE]

Every case trains each of the k members for `steps` steps at a batch of `batch` with the
engine's own code: sequential and packed run `worker.Loop.train_epoch`, the array runs
`fusion.FusedTrainer.train_epoch` (same data, augmentation and optimizer). It prints the
training images per second of all members together, the ratio against sequential, and on
a GPU the peak memory of each case. `--compile MODE` adds the fused array under
torch.compile (`reduce-overhead` captures CUDA graphs on a GPU). Evaluation is not timed:
it is the same forward pass for every case."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch

from benchmarks._util import interleaved, machine, resolved_train
from raysweep.training import data, fusion, worker
from raysweep.core.trial import ArmLabel, TrialSpec


def specs(args) -> list[TrialSpec]:
    t = resolved_train("sgd", dataset="synthetic", synthetic_classes=100,
                       train_size=args.steps * args.batch, batch_size=args.batch, epochs=10,
                       augment="trivialaugment_erasing", amp="auto", pipeline="tensor")
    return [TrialSpec("bench_fusion", args.model, {}, seed, t,
                      (ArmLabel(None, args.model, False),)) for seed in range(args.members)]


def setup(args, device):
    members = specs(args)
    splits = data.prepare(members[0].train, device)
    return members, splits, data.steps_per_epoch(len(splits.train), args.batch)


def separate_loops(members, splits, steps, device) -> list[worker.Loop]:
    loops = []
    for spec in members:
        opt = fusion.new_shadow(spec, splits.classes, steps)
        opt.model.to(device)
        amp = worker.amp_dtype(spec.train.amp, device)
        loops.append(worker.Loop(spec, opt, opt.model, splits, steps, device, amp, 0, 1))
    return loops


def train_one(loop: worker.Loop, epoch: int) -> int:
    spec, n = loop.spec, len(loop.splits.train)
    order = data.epoch_order(n, spec.seed, epoch)[:loop.steps * spec.train.batch_size]
    loop.train_epoch(data.train_batches(loop.splits.train, order, spec.train.batch_size,
                                        0, 1, spec.seed * 100_003 + epoch, 0))
    return loop.steps * spec.train.batch_size


def packed_worker(args, index: int, threads: int, device_name: str, queue) -> None:
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    members, splits, steps = setup(args, device)
    [loop] = separate_loops(members[index:index + 1], splits, steps, device)
    train_one(loop, 0)   # warm-up
    for repeat in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.time()
        images = train_one(loop, repeat + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        queue.put((repeat, begin, time.time(), images))


def packed(args, device) -> float:
    """Median over repeats of all members' images / wall time while all k ran at once."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // args.members)
    procs = [ctx.Process(target=packed_worker, args=(args, i, threads, str(device), queue))
             for i in range(args.members)]
    for p in procs:
        p.start()
    rows = [queue.get() for _ in range(args.members * args.repeats)]
    for p in procs:
        p.join()
    rates = []
    for repeat in range(args.repeats):
        mine = [r for r in rows if r[0] == repeat]
        rates.append(sum(r[3] for r in mine) / (max(r[2] for r in mine) - min(r[1] for r in mine)))
    return sorted(rates)[len(rates) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--model", default="resnet_20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", default="off")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    members, splits, steps = setup(args, device)
    loops = separate_loops(members, splits, steps, device)
    shadows = [fusion.Member(s, fusion.new_shadow(s, splits.classes, steps), [], [])
               for s in members]
    array = fusion.FusedTrainer(shadows, splits, steps, device)
    cases = {"sequential": lambda: sum(train_one(loop, 1) for loop in loops),
             "fused": lambda: len(members) * _fused_images(array)}
    if args.compile != "off":
        compiled = fusion.FusedTrainer(shadows, splits, steps, device, args.compile)
        cases[f"fused+compile({args.compile})"] = lambda: len(members) * _fused_images(compiled)
    for fn in cases.values():
        fn()   # warm-up (and compilation)
    rates = interleaved(cases, args.repeats, device)
    memory = {}
    if device.type == "cuda":
        for name, fn in cases.items():
            torch.cuda.reset_peak_memory_stats()
            fn()
            memory[name] = torch.cuda.max_memory_allocated() / 2**20
    rates["packed"] = packed(args, device)
    print(f"bench_fusion: {args.members} × {args.model}, batch {args.batch}, {args.steps} steps "
          f"per member per repeat, median of {args.repeats}; {machine()}")
    for name, rate in rates.items():
        mem = f", peak {memory[name]:.0f} MiB" if name in memory else ""
        print(f"  {name:<28} {rate:10.0f} images/s  × {rate / rates['sequential']:.2f}{mem}")


def _fused_images(array: fusion.FusedTrainer) -> int:
    array.train_epoch(1)
    return array.steps * array.t.batch_size


if __name__ == "__main__":
    main()
