"""The datasets a study can name, each read into one form: uint8 images (N, 3, 32, 32)
and int64 labels (N,), the zoo's input.

    info(name)                  classes, normalisation, default validation split
    load(train, split)          (images, labels) of split "train" or "test", cut to size
    check_available(train)      read once on the driver: a missing or damaged dataset
                                fails the study before any trial starts
    stratified_split(...)      the validation split carved from the training images
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from raysweep.errors import DataError
from raysweep.trial import TrainConfig


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: int | None               # None: set by the study (synthetic_classes)
    mean: tuple[float, float, float]  # per-channel mean of the training images, in [0, 1]
    std: tuple[float, float, float]
    val_fraction: float               # default share of the training images held out
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "cifar100": DatasetInfo("cifar100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                            0.1, "CIFAR-100: 50,000 train / 10,000 test 32×32 colour images"),
    "cifar10": DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           0.1, "CIFAR-10: 50,000 train / 10,000 test 32×32 colour images"),
    "synthetic": DatasetInfo("synthetic", None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.1,
                             "a learnable stand-in: smooth colour templates, shifts and noise"),
}


def info(name: str) -> DatasetInfo:
    return DATASETS[name]


def num_classes(train: TrainConfig) -> int:
    return info(train.dataset).classes or train.synthetic_classes


def load(train: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N×3×32×32, labels int64 N) of `split` ∈ {train, test}, cut to size."""
    limit = train.train_size if split == "train" else train.test_size
    if train.dataset == "synthetic":
        return synthetic(train.synthetic_classes, limit or (5000 if split == "train" else 1000),
                         split)
    images, labels = _torchvision_split(train, split)
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def check_available(train: TrainConfig) -> None:
    """Read (or download) a dataset once on the driver, so a missing or damaged dataset
    fails the study before any trial starts instead of erroring every trial."""
    if train.dataset != "synthetic":
        for split in ("train", "test"):
            _torchvision_split(train, split)


def train_images(train: TrainConfig) -> int:
    """How many images train per epoch: the training split less the validation split."""
    _, labels = load(train, "train")
    keep, _ = stratified_split(labels, train.val_fraction, train.split_seed)
    return len(keep)


def fingerprint(train: TrainConfig) -> str | None:
    """What identifies the data beyond the dataset's name (a user's image folder)."""
    return None


def stratified_split(labels: torch.Tensor, fraction: float, split_seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): `fraction` of every class, drawn with
    `split_seed`, both sorted. fraction 0 → every image trains."""
    if fraction <= 0:
        return torch.arange(len(labels)), torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(split_seed)
    val = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero()[:, 0]
        members = members[torch.randperm(len(members), generator=gen)]
        val.append(members[:round(fraction * len(members))])
    val_idx = torch.cat(val).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    return keep.nonzero()[:, 0], val_idx


# --- CIFAR through torchvision's own reader ---

def _torchvision_split(train: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from filelock import FileLock
    from torchvision import datasets

    root = Path(os.path.expanduser(train.data_dir))
    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.CIFAR100 if train.dataset == "cifar100" else datasets.CIFAR10
    if not train.data_checksums:
        cls = _without_checksums(cls)
    # Several workers on one node may start at once; one downloads, the others wait.
    with FileLock(str(root / ".raysweep-download.lock")):
        try:
            ds = cls(str(root), train=(split == "train"), download=train.download)
        except RuntimeError:
            if (root / cls.base_folder).is_dir():
                raise DataError(f"{train.dataset} files under {str(root / cls.base_folder)!r} "
                                f"fail torchvision's MD5 check (damaged, or not the official "
                                f"archive; data_checksums: false accepts a re-packed copy)") from None
            raise DataError(f"{train.dataset} not found under data_dir={str(root)!r}; "
                            f"pass --download or point --data-dir at it") from None
        except Exception as exc:  # unpickling errors of a damaged batch file
            raise DataError(f"{train.dataset} under {str(root)!r} is unreadable: "
                            f"{type(exc).__name__}: {exc}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


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
