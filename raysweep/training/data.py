"""A trial's data in its train loop: the train / validation / test splits on the worker's
device, and each epoch's share of the global batches for one worker.

One epoch is a permutation of the training images fixed by (seed, epoch), cut into
`len // batch_size` global batches (the last partial batch is dropped), so the steps per
epoch depend on the data and the global batch only. Worker r of W takes rows
[r·B/W, (r+1)·B/W) of every global batch. The tensor pipeline draws each image's
augmentation from a CPU generator seeded by (seed, epoch, chunk of global batches), for
the whole chunk on every worker, and applies the rows it owns: an image gets the same
crop, flip and TrivialAugment op however many workers (or which device) train the trial.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from raysweep.datasets import readers as datasets
from raysweep.training.augment import BatchAugment, Draws, normalize
from raysweep.errors import StudyError
from raysweep.core.trial import TrainConfig

if TYPE_CHECKING:
    from torchvision.transforms import v2

# Images augmented per call, in whole global batches: on a GPU the augmentation is ~100
# small kernels per call whatever the batch, so a batch of 128 alone is launch-bound.
AUGMENT_CHUNK = 8192
EVAL_BATCH = 256
# torch.compile modes that capture CUDA graphs: a graph replays one input shape, so the
# last partial evaluation batch is padded to EVAL_BATCH (`padded`).
GRAPH_MODES = ("reduce-overhead", "max-autotune")


class DeviceSplit:
    """A split held once as uint8 on the worker's device, for the `tensor` pipeline; its
    transform maps a uint8 batch and `Draws` to a normalised float batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device, transform):
        self.images, self.labels = images.to(device), labels.to(device)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)


class TensorDataset(Dataset):
    """A split for the `torchvision` pipeline: per-sample transforms in a DataLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


@dataclass
class Splits:
    train: DeviceSplit | TensorDataset
    val: DeviceSplit | TensorDataset | None    # None when the study holds out no validation
    test: DeviceSplit | TensorDataset
    classes: int


def prepare(train: TrainConfig, device) -> Splits:
    """The trial's splits: the validation split carved from the training images
    (stratified, `split_seed`), the test split as published."""
    images, labels = datasets.load(train, "train")
    keep, held_out = datasets.stratified_split(labels, train.val_fraction, train.split_seed)
    test_images, test_labels = datasets.load(train, "test")
    info = datasets.info(train.dataset)
    if train.pipeline == "torchvision":
        make_train = lambda x, y: TensorDataset(x, y, train_transform(train.augment, info))  # noqa: E731
        make_eval = lambda x, y: TensorDataset(x, y, eval_transform(info))  # noqa: E731
    else:
        augment = BatchAugment(train.augment, info.mean, info.std)
        make_train = lambda x, y: DeviceSplit(x, y, device, augment)  # noqa: E731
        make_eval = lambda x, y: DeviceSplit(  # noqa: E731
            x, y, device, lambda batch, draws: normalize(batch, info.mean, info.std))
    return Splits(make_train(images[keep], labels[keep]),
                  make_eval(images[held_out], labels[held_out]) if len(held_out) else None,
                  make_eval(test_images, test_labels), datasets.num_classes(train))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    steps = n_train // batch_size
    if steps == 0:
        raise StudyError(f"batch_size={batch_size} (global) is larger than the {n_train} "
                         f"training images left after the validation split; allowed: "
                         f"batch_size <= {n_train}")
    return steps


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the training images in epoch `epoch` of a trial with `seed`."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def worker_rows(steps: int, batch_size: int, rank: int, world: int) -> torch.Tensor:
    """Positions (into an epoch order) of the rows worker `rank` trains, step by step."""
    per = batch_size // world
    starts = torch.arange(steps)[:, None] * batch_size + rank * per
    return (starts + torch.arange(per)[None, :]).reshape(-1)


def train_batches(split, order: torch.Tensor, batch_size: int, rank: int, world: int,
                  draw_seed: int, loader_workers: int):
    """One epoch of this worker's share of the global batches (batch_size / world images
    per step)."""
    steps = len(order) // batch_size
    if isinstance(split, DeviceSplit):
        return TensorLoader(split, order, batch_size, rank, world, draw_seed)
    rows = order[worker_rows(steps, batch_size, rank, world)].tolist()
    return DataLoader(torch.utils.data.Subset(split, rows), batch_size=batch_size // world,
                      shuffle=False, num_workers=loader_workers,
                      pin_memory=torch.cuda.is_available())


def batches_per_augment_call(batch_size: int) -> int:
    """Whole global batches augmented per call: up to AUGMENT_CHUNK images, at least one."""
    return max(1, AUGMENT_CHUNK // batch_size)


class TensorLoader:
    """This worker's batches of a DeviceSplit, augmented a chunk of global batches at a
    time with draws made for the whole chunk (see the module docstring)."""

    def __init__(self, split: DeviceSplit, order: torch.Tensor, batch_size: int, rank: int,
                 world: int, draw_seed: int):
        self.split, self.batch_size, self.rank, self.world = split, batch_size, rank, world
        self.order, self.draw_seed = order, draw_seed
        self.steps = len(order) // batch_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        per_call = batches_per_augment_call(self.batch_size)
        per = self.batch_size // self.world
        device = self.split.labels.device
        for first in range(0, self.steps, per_call):
            count = min(per_call, self.steps - first)
            mine = worker_rows(count, self.batch_size, self.rank, self.world)
            chunk = self.order[first * self.batch_size:(first + count) * self.batch_size]
            idx = chunk[mine].to(device)
            gen = torch.Generator().manual_seed(self.draw_seed * 1_000_003 + first)
            images = self.split.transform(self.split.images[idx],
                                          Draws(gen, count * self.batch_size, mine))
            labels = self.split.labels[idx]
            for s in range(count):
                yield images[s * per:(s + 1) * per], labels[s * per:(s + 1) * per]


def eval_batches(split, rank: int, world: int, loader_workers: int):
    """This worker's share of an evaluation split, in order (ranks' shares are disjoint
    and cover the split; their sums are all-reduced)."""
    idx = torch.arange(len(split))[rank::world]
    if isinstance(split, DeviceSplit):
        return ((split.transform(split.images[b], None), split.labels[b])
                for b in idx.to(split.labels.device).split(EVAL_BATCH))
    return DataLoader(torch.utils.data.Subset(split, idx.tolist()), batch_size=EVAL_BATCH,
                      shuffle=False, num_workers=loader_workers,
                      pin_memory=torch.cuda.is_available())


def padded(images: torch.Tensor, size: int) -> torch.Tensor:
    """The batch with zero images appended up to `size` rows (whose outputs the caller
    drops: in eval mode no row affects another)."""
    missing = size - len(images)
    if missing <= 0:
        return images
    return torch.cat([images, images.new_zeros(missing, *images.shape[1:])])


def train_transform(augment: str, info: datasets.DatasetInfo) -> v2.Compose:
    """Paper 002's train augmentation (`trivialaugment_erasing`) and its ablation levels,
    per sample (the `torchvision` pipeline)."""
    from torchvision.transforms import v2  # here, not at the top: see training/augment.py

    ops = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    if augment in ("trivialaugment", "trivialaugment_erasing", "mixup_cutmix"):
        ops.append(v2.TrivialAugmentWide())
    elif augment == "autoaugment":
        ops.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    if augment in ("trivialaugment_erasing", "mixup_cutmix"):
        ops.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0))
    return v2.Compose(ops)


def eval_transform(info: datasets.DatasetInfo) -> v2.Compose:
    from torchvision.transforms import v2

    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)])


def batch_mix(augment: str, classes: int):
    """MixUp or CutMix on a whole batch (soft labels), or None. Drawn from the worker's
    torch RNG: with several workers, each mixes within its own rows."""
    if augment != "mixup_cutmix":
        return None
    from torchvision.transforms import v2

    return v2.RandomChoice([v2.MixUp(num_classes=classes), v2.CutMix(num_classes=classes)])
