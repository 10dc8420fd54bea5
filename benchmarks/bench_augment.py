"""Batched tensor augmentation (raysweep.augment) vs torchvision's per-sample pipelines
in a DataLoader, per CPU core (one thread, no loader processes) and, with a GPU, on it.

    .venv/bin/python -m benchmarks.bench_augment [--images 4096] [--repeats 3]

Every pipeline is paper 002's train augmentation: RandomCrop 32 pad 4, flip,
TrivialAugmentWide, normalise, RandomErasing p=0.5 (batch 256)."""
from __future__ import annotations

import argparse

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from benchmarks._util import interleaved, machine
from raysweep.training import augment, data
from raysweep.datasets import readers as datasets

CIFAR100 = datasets.info("cifar100")
MEAN, STD = CIFAR100.mean, CIFAR100.std
BATCH = 256
# Images per call as data.TensorLoader augments them.
CHUNK = BATCH * data.batches_per_augment_call(BATCH)


class PILCifar(Dataset):
    """What torchvision's CIFAR dataset does per item: a PIL image from the HWC array."""

    def __init__(self, images: torch.Tensor, transform):
        self.hwc = images.permute(0, 2, 3, 1).numpy()
        self.transform = transform

    def __len__(self):
        return len(self.hwc)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.hwc[i])), 0


def pil_pipeline():
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                      T.TrivialAugmentWide(), T.ToTensor(), T.Normalize(MEAN, STD),
                      T.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)])


def drain(loader) -> int:
    return sum(len(x) for x, _ in loader)


def batched(images: torch.Tensor, device, per_call: int = BATCH) -> callable:
    """Batches of `per_call` images on `device`, their draws from a CPU generator (as
    data.TensorLoader draws them, whatever the device)."""
    aug = augment.BatchAugment("trivialaugment_erasing", MEAN, STD)
    imgs, gen = images.to(device), torch.Generator().manual_seed(0)

    def run() -> int:
        for begin in range(0, len(imgs), per_call):
            aug(imgs[begin:begin + per_call], gen)
        return len(imgs)
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = datasets.synthetic(100, args.images, "train")[0]
    pil = DataLoader(PILCifar(images, pil_pipeline()), batch_size=BATCH, num_workers=0)
    v2_ds = data.TensorDataset(images, torch.zeros(len(images), dtype=torch.long),
                               data.train_transform("trivialaugment_erasing", CIFAR100))
    v2_loader = DataLoader(v2_ds, batch_size=BATCH, num_workers=0)
    cases = {"batched tensor (raysweep.augment)": batched(images, "cpu"),
             "torchvision per-sample PIL, DataLoader": lambda: drain(pil),
             "torchvision v2 per-sample uint8 tensor, DataLoader": lambda: drain(v2_loader)}
    rates = interleaved(cases, args.repeats)
    print(f"# augmentation, 1 CPU thread, {args.images} images, batch {BATCH}; {machine()}")
    base = rates["torchvision per-sample PIL, DataLoader"]
    for name, r in rates.items():
        print(f"{name:52s} {r:10.0f} images/s per core  {r / base:6.2f}x PIL")
    if torch.cuda.is_available():
        # 64k images (the set tiled): enough work per repeat to time a GPU.
        tiled = images.repeat(-(-65536 // len(images)), 1, 1, 1)[:65536]
        gpu = interleaved({f"batch {BATCH} per call": batched(tiled, "cuda"),
                           f"{CHUNK} per call (TensorLoader on a GPU)":
                               batched(tiled, "cuda", CHUNK)},
                          args.repeats + 2, "cuda")
        for name, rate in gpu.items():
            label = f"batched tensor on {torch.cuda.get_device_name()}, {name}"
            print(f"{label:52s} {rate:10.0f} images/s          {rate / base:6.2f}x PIL per core")
    else:
        print("no GPU here: GPU figure not measured")


if __name__ == "__main__":
    main()
