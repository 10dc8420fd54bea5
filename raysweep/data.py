"""Datasets and augmentation for the worker loop.

Every dataset is held as a uint8 tensor (N, 3, 32, 32) plus int64 labels, so one code
path serves CIFAR-100, CIFAR-10 (both read by torchvision from the standard on-disk
format) and the synthetic learnable set used by tests and CPU demos.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from raysweep.augment import BatchAugment, normalize

NORMALISATION = {  # per-channel mean / std of the training split
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
NUM_CLASSES = {"cifar100": 100, "cifar10": 10}


class DataError(ValueError):
    """The data a study asks for is missing or unreadable."""


def num_classes(train: dict) -> int:
    return train["synthetic_classes"] if train["dataset"] == "synthetic" else NUM_CLASSES[train["dataset"]]


def load_split(train: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N×3×32×32, labels int64 N) of `split` ∈ {train, test}, cut to size."""
    if train["dataset"] == "synthetic":
        size = train["train_size" if split == "train" else "test_size"]
        images, labels = synthetic(train["synthetic_classes"],
                                   size or (5000 if split == "train" else 1000), split)
    else:
        images, labels = _torchvision_split(train, split)
    limit = train["train_size" if split == "train" else "test_size"]
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def _torchvision_split(train: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from filelock import FileLock
    from torchvision import datasets

    root = Path(os.path.expanduser(train["data_dir"]))
    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.CIFAR100 if train["dataset"] == "cifar100" else datasets.CIFAR10
    if not train["data_checksums"]:
        cls = _without_checksums(cls)
    # Several workers on one node may start at once; one downloads, the others wait.
    with FileLock(str(root / ".raysweep-download.lock")):
        try:
            ds = cls(str(root), train=(split == "train"), download=train["download"])
        except RuntimeError:
            if (root / cls.base_folder).is_dir():
                raise DataError(f"{train['dataset']} files under {str(root / cls.base_folder)!r} "
                                f"fail torchvision's MD5 check (damaged, or not the official "
                                f"archive; data_checksums: false accepts a re-packed copy)") from None
            raise DataError(f"{train['dataset']} not found under data_dir={str(root)!r}; "
                            f"pass --download or point --data-dir at it") from None
        except Exception as exc:  # unpickling errors of a damaged batch file
            raise DataError(f"{train['dataset']} under {str(root)!r} is unreadable: "
                            f"{type(exc).__name__}: {exc}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def check_available(train: dict) -> None:
    """Read (or download) a CIFAR dataset once on the driver, so a missing or damaged
    dataset fails the study before any trial starts instead of erroring every trial."""
    if train["dataset"] != "synthetic":
        for split in ("train", "test"):
            _torchvision_split(train, split)


def _without_checksums(cls):
    """The same torchvision reader, accepting files whose MD5 differs from the official
    archive's (a re-packed or cut-down copy in the same format, as the tests write):
    torchvision skips the comparison for a file listed without a checksum."""
    return type(f"Unverified{cls.__name__}", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def synthetic(classes: int, size: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable stand-in for CIFAR: each class is a smooth colour template; an image
    is its template, shifted by up to 2 px, plus noise. Templates are mirror-symmetric so
    that a horizontal flip keeps the class, and the same for both splits (fixed seed);
    noise and shifts differ per split."""
    gen = torch.Generator().manual_seed(20261123)
    coarse = torch.rand(classes, 3, 4, 4, generator=gen)
    coarse = (coarse + coarse.flip(-1)) / 2
    templates = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear",
                                                align_corners=False)
    low, high = templates.amin((1, 2, 3), keepdim=True), templates.amax((1, 2, 3), keepdim=True)
    templates = (templates - low) / (high - low)  # full contrast for every class
    gen.manual_seed(1 if split == "train" else 2)
    labels = torch.randint(0, classes, (size,), generator=gen)
    shifts = torch.randint(-2, 3, (size, 2), generator=gen)
    noise = torch.rand(size, 3, 32, 32, generator=gen)
    images = torch.empty(size, 3, 32, 32)
    for i in range(size):
        images[i] = torch.roll(templates[labels[i]], tuple(shifts[i].tolist()), dims=(1, 2))
    images = 0.7 * images + 0.3 * noise
    return (images * 255).round().to(torch.uint8), labels


def train_transform(augment: str, dataset: str) -> v2.Compose:
    """Seed 002's train augmentation (`trivialaugment_erasing`) and its ablation levels."""
    mean, std = NORMALISATION[dataset]
    ops = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    if augment in ("trivialaugment", "trivialaugment_erasing", "mixup_cutmix"):
        ops.append(v2.TrivialAugmentWide())
    elif augment == "autoaugment":
        ops.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if augment in ("trivialaugment_erasing", "mixup_cutmix"):
        ops.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0))
    return v2.Compose(ops)


def test_transform(dataset: str) -> v2.Compose:
    mean, std = NORMALISATION[dataset]
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def batch_mix(augment: str, classes: int):
    """MixUp or CutMix on a whole batch (soft labels), or None."""
    if augment != "mixup_cutmix":
        return None
    return v2.RandomChoice([v2.MixUp(num_classes=classes), v2.CutMix(num_classes=classes)])


class TensorDataset(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


class DeviceSplit:
    """A split held once as uint8 on the worker's device, for the `tensor` pipeline; its
    transform maps a uint8 batch and a generator to a normalised float batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device, transform):
        self.images, self.labels = images.to(device), labels.to(device)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)


class TensorLoader:
    """Batches of `indices` (in that order) cut from a DeviceSplit, augmented as whole
    batches with one generator: no per-sample Python and no host-to-device copies."""

    def __init__(self, split: DeviceSplit, indices: list[int], batch_size: int,
                 drop_last: bool, gen: torch.Generator):
        self.split, self.batch_size, self.gen = split, batch_size, gen
        self.indices = torch.tensor(indices, dtype=torch.long, device=split.labels.device)
        n = len(indices)
        self.stop = n - n % batch_size if drop_last else n

    def __len__(self) -> int:
        return -(-self.stop // self.batch_size)

    def __iter__(self):
        per_call = augment_chunk(self.batch_size, self.split.images.device)
        for begin in range(0, self.stop, per_call):
            idx = self.indices[begin:min(begin + per_call, self.stop)]
            images = self.split.transform(self.split.images[idx], self.gen)
            labels = self.split.labels[idx]
            for b in range(0, len(idx), self.batch_size):
                yield images[b:b + self.batch_size], labels[b:b + self.batch_size]


# The augmentation is ~100 small kernels per call whatever the batch: on a GPU a batch
# of 128 leaves it launch-bound, so the loader augments this many images per call.
GPU_AUGMENT_CHUNK = 8192


def augment_chunk(batch_size: int, device) -> int:
    """Images augmented per call: whole batches, up to GPU_AUGMENT_CHUNK on a GPU."""
    if torch.device(device).type != "cuda":
        return batch_size
    return batch_size * max(1, GPU_AUGMENT_CHUNK // batch_size)


def pipeline(train: dict) -> str:
    """`tensor` (batched, on the worker's device) unless the study asks for torchvision's
    per-sample DataLoader path."""
    return "torchvision" if train["pipeline"] == "torchvision" else "tensor"


def splits(train: dict, device) -> tuple:
    """(train, test) datasets for the study's pipeline."""
    tr, te = load_split(train, "train"), load_split(train, "test")
    if pipeline(train) == "torchvision":
        return (TensorDataset(*tr, train_transform(train["augment"], train["dataset"])),
                TensorDataset(*te, test_transform(train["dataset"])))
    mean, std = NORMALISATION[train["dataset"]]
    return (DeviceSplit(*tr, device, BatchAugment(train["augment"], mean, std)),
            DeviceSplit(*te, device, lambda x, gen: normalize(x, mean, std)))


def batches(ds, indices: list[int], batch_size: int, workers: int, drop_last: bool,
            seed: int, device):
    """One pass over `indices` of either pipeline's dataset. The tensor path draws its
    augmentations from a generator on the device seeded with `seed`; the DataLoader path
    from the global torch RNG, which the caller seeds."""
    if isinstance(ds, DeviceSplit):
        return TensorLoader(ds, indices, batch_size, drop_last,
                            torch.Generator(device).manual_seed(seed))
    return loader(ds, indices, batch_size, workers, drop_last)


def shard(n: int, rank: int, world: int, seed: int | None, epoch: int) -> list[int]:
    """This rank's indices: a (seed, epoch)-fixed permutation, cut to equal-length
    shards so every rank runs the same number of steps (DDP would hang otherwise).
    seed=None keeps the natural order (evaluation)."""
    if seed is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    per_rank = n // world if seed is not None else -(-n // world)
    return order[rank::world][:per_rank].tolist()


def loader(ds: Dataset, indices: list[int], batch_size: int, workers: int, drop_last: bool):
    subset = torch.utils.data.Subset(ds, indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, drop_last=drop_last,
                      num_workers=workers, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """Random images in the exact `cifar-100-python` pickle layout torchvision reads (only
    the MD5 sums differ from the official archive: read it with data_checksums: false).
    For tests and benchmarks where the real CIFAR-100 cannot be downloaded."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n).tolist()
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": split,
                 "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)],
                     "coarse_label_names": [f"super_{i}" for i in range(20)]}, f)
    return Path(root)
