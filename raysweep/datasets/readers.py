"""The datasets a study can name, each read into one form: uint8 images (N, 3, 32, 32)
and int64 labels (N,), the zoo's input.

    info(name)                  classes, normalisation, default validation split
    num_classes(train)          the classifier's outputs
    load(train, split)          (images, labels) of split "train" or "test", cut to size
    check_available(train)      read once on the driver: a missing or damaged dataset
                                fails the study before any trial starts
    fingerprint(train)          what identifies a user's image folder (None otherwise)
    stratified_split(...)       the validation split carved from the training images

cifar100, cifar10
    torchvision's own readers (`datasets.CIFAR100/CIFAR10`) on `<data_dir>/cifar-*-python`.

fashion_mnist
    The official Fashion-MNIST files, read by torchvision's own idx reader
    (`torchvision.datasets.mnist.read_image_file/read_label_file`, what `FashionMNIST`
    calls). The four files, each gzip-compressed (`.gz`) or not, are looked for in the
    first of these folders that holds any of them:
        <data_dir>/FashionMNIST/raw/          torchvision's layout (what --download leaves)
        <data_dir>/                           e.g. --data-dir /usr/share/datasets/fashion-mnist
        /usr/share/datasets/fashion-mnist/    Debian's package (SYSTEM_FASHION_MNIST)
    Debian's `dataset-fashion-mnist` (0.0~git20200523.55506a9-1; installing it needs root,
    reading it does not) installs exactly:
        /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz   60,000 × 28 × 28 uint8
        /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz   60,000 labels 0..9
        /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz    10,000 × 28 × 28
        /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz    10,000 labels
    (plus the data set's benchmark table in /usr/share/doc/dataset-fashion-mnist/).
    Debian re-compressed the archives, so their MD5s differ from torchvision's list, but
    the unpacked bytes are the official ones: `data_checksums` compares the MD5 of the
    unpacked files (FASHION_MNIST_MD5). A `.gz` is unpacked into a temporary folder on
    every read (the training split: 1-2 s on the 2-core machine, checksum included);
    nothing is written next to the data.
    To the zoo's input: a 2-pixel black border (28 → 32; the background is 0, so the
    border is background and no pixel is resampled), the grey channel copied to R, G and B.
    Normalisation: the mean and std of those padded training images (FASHION_MNIST_STATS).

imagefolder
    A user's images, read by torchvision's `ImageFolder` (classes = sub-folder names,
    sorted; files with one of its IMG_EXTENSIONS). `data_dir` is either
        <data_dir>/train/<class>/*.png and <data_dir>/test/<class>/*.png   (split by folders)
    or  <data_dir>/<class>/*.png     (the test split: `test_fraction` of every class, 0.2
                                      by default (DEFAULT_TEST_FRACTION), drawn
                                      with the fixed TEST_SPLIT_SEED, so every trial of
                                      every study on the folder tests on the same images)
    Each image: RGB, the shorter side resized to 32 px (bilinear, antialiased), the centre
    32 × 32 cropped (the aspect ratio is kept; the long side's edges are cut). The images
    of a split are put in a fixed random order (SHUFFLE_SEED) so that `train_size` takes
    images of every class. Normalisation: ImageNet's statistics (a user's photos).

synthetic
    A learnable stand-in (see `synthetic`), for tests and CPU demos where no real data
    set is at hand.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from raysweep.errors import DataError, StudyError
from raysweep.core.trial import TrainConfig, TrialSpec

# torch is imported in the functions that read or make images: a study is parsed (and
# `show`, `list` and a refused `run` answer) without paying torch's import (~2.5 s).
if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: int | None               # None: set by the study or the folder (num_classes)
    mean: tuple[float, float, float]  # per-channel mean of the 3×32×32 training images, in [0, 1]
    std: tuple[float, float, float]
    val_fraction: float               # default share of the training images held out
    description: str
    class_names: tuple[str, ...] = ()  # in label order, where the data set fixes them
    images: tuple[int, int] | None = None  # (train, test) as published; None: not fixed

# Fashion-MNIST's 60,000 training images after the 2-pixel border, measured on the
# official files with `measure_stats` (unpadded 28 × 28: the familiar 0.2860 / 0.3530).
FASHION_MNIST_STATS = ((0.2190,) * 3, (0.3318,) * 3)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

DATASETS: dict[str, DatasetInfo] = {
    "cifar100": DatasetInfo("cifar100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                            0.1, "CIFAR-100: 50,000 train / 10,000 test 32×32 colour images",
                            images=(50_000, 10_000)),
    "cifar10": DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           0.1, "CIFAR-10: 50,000 train / 10,000 test 32×32 colour images",
                           images=(50_000, 10_000)),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, *FASHION_MNIST_STATS, 1 / 12,
        "Fashion-MNIST: 60,000 train / 10,000 test 28×28 grey images of clothing, "
        "padded to 32×32, grey copied to 3 channels (5,000 held out for validation)",
        FASHION_MNIST_CLASSES, images=(60_000, 10_000)),
    "imagefolder": DatasetInfo(
        "imagefolder", None, *IMAGENET_STATS, 0.1,
        "your images: a folder of class sub-folders (or train/ and test/ folders of them), "
        "resized to 32 px on the shorter side and centre-cropped to 32×32"),
    "synthetic": DatasetInfo("synthetic", None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.1,
                             "a learnable stand-in: smooth colour templates, shifts and noise",
                             images=(5_000, 1_000)),   # its default sizes; any size is made
}

SPLITS = ("train", "test")


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"dataset={name!r} is unknown; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def num_classes(train: TrainConfig) -> int:
    if train.dataset == "imagefolder":
        return len(_image_folder(train).classes)
    return info(train.dataset).classes or train.synthetic_classes


def load(train: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N×3×32×32, labels int64 N) of `split` ∈ {train, test}, cut to size."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    limit = train.train_size if split == "train" else train.test_size
    if train.dataset == "synthetic":
        return synthetic(train.synthetic_classes, limit or (5000 if split == "train" else 1000),
                         split)
    if train.dataset == "imagefolder":
        return _image_folder(train).load(split, limit)
    reader = _fashion_mnist_split if train.dataset == "fashion_mnist" else _torchvision_split
    images, labels = reader(train, split)
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def check_available(train: TrainConfig) -> None:
    """Read (or download) a dataset once on the driver, so a missing or damaged dataset
    fails the study before any trial starts instead of erroring every trial."""
    info(train.dataset)
    if train.dataset != "synthetic":
        for split in SPLITS:
            load(train, split)


def train_images(train: TrainConfig) -> int:
    """How many images train per epoch: the training split less the validation split."""
    _, labels = load(train, "train")
    keep, _ = stratified_split(labels, train.val_fraction, train.split_seed)
    return len(keep)


def fingerprint(train: TrainConfig) -> str | None:
    """What identifies the data beyond the dataset's name: for an image folder, a short
    hash of its image files' relative paths and sizes (two different folders never share
    a trial identity; the same folder copied elsewhere keeps it). None otherwise."""
    if train.dataset != "imagefolder":
        return None
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    root = _folder_root(train)
    digest = hashlib.sha1()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders.sort()  # os.walk descends in this list's order
        for name in sorted(files):
            if has_file_allowed_extension(name, IMG_EXTENSIONS):
                path = Path(folder) / name
                digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n"
                              .encode())
    return digest.hexdigest()[:12]


def stratified_split(labels: torch.Tensor, fraction: float, split_seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept indices, held-out indices): `fraction` of every class (rounded), drawn with
    `split_seed` alone (never the trial's seed or the global RNG), both sorted.
    fraction 0 → every image is kept."""
    import torch
    if fraction <= 0:
        return torch.arange(len(labels)), torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(split_seed)
    held = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero()[:, 0]
        members = members[torch.randperm(len(members), generator=gen)]
        held.append(members[:round(fraction * len(members))])
    held_idx = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_idx] = False
    return keep.nonzero()[:, 0], held_idx


# --- CIFAR through torchvision's own reader ---

def _torchvision_split(train: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch
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


# --- Fashion-MNIST: the official idx files, wherever they are ---

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# MD5 of the unpacked official files (the same bytes in torchvision's download and in
# Debian's package; the .gz archives themselves differ between the two).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_FIX = ("apt-get install dataset-fashion-mnist, point --data-dir at a folder "
                     "holding the four idx files (.gz or not), or pass --download")
FASHION_MNIST_DAMAGED_FIX = ("replace it: apt-get install --reinstall dataset-fashion-mnist "
                             "(Debian's copy), or delete it and pass --download")
PAD = 2  # pixels of black border on each side: 28 + 2 × 2 = 32


def fashion_mnist_folder(data_dir: str) -> Path | None:
    """The first folder (see the module docstring) holding any of the four files."""
    root = Path(os.path.expanduser(data_dir))
    for folder in (root / "FashionMNIST" / "raw", root, SYSTEM_FASHION_MNIST):
        if any(_idx_file(folder, name) for name in FASHION_MNIST_MD5):
            return folder
    return None


def _fashion_mnist_split(train: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = fashion_mnist_folder(train.data_dir) or _download_fashion_mnist(train)
    image_name, label_name = FASHION_MNIST_FILES[split]
    with tempfile.TemporaryDirectory(prefix="raysweep-fashion-mnist-") as tmp:
        images = _read_idx(read_image_file, folder, image_name, Path(tmp), train.data_checksums)
        labels = _read_idx(read_label_file, folder, label_name, Path(tmp), train.data_checksums)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or len(labels) == 0:
        raise DataError(f"fashion_mnist files {str(folder / image_name)!r} and {label_name} "
                        f"do not match (images {tuple(images.shape)}, {len(labels)} labels; "
                        f"expected N×28×28 and N); {FASHION_MNIST_DAMAGED_FIX}")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"fashion_mnist file {str(folder / label_name)!r} has labels outside "
                        f"0..9 (damaged); {FASHION_MNIST_DAMAGED_FIX}")
    return fashion_mnist_to_zoo(images), labels


def fashion_mnist_to_zoo(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×28×28 grey → N×3×32×32: a PAD-pixel black border, grey copied to R, G, B."""
    import torch
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD), value=0)
    return padded[:, None].expand(-1, 3, -1, -1).contiguous()


def _idx_file(folder: Path, name: str) -> Path | None:
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _unpacked(folder: Path, name: str, tmp: Path, checksums: bool) -> Path:
    """The unpacked idx file `name` of `folder` (a .gz is unpacked into `tmp`), its MD5
    checked against the official file's when `checksums`."""
    path = _idx_file(folder, name)
    if path is None:
        raise DataError(f"fashion_mnist under {str(folder)!r} lacks {name} (or {name}.gz); "
                        f"{FASHION_MNIST_FIX}")
    target, md5 = path, hashlib.md5()
    try:
        if path.suffix == ".gz":
            target = tmp / name
            with gzip.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        with open(target, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                md5.update(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"fashion_mnist file {str(path)!r} is damaged ({_first_line(exc)}); "
                        f"{FASHION_MNIST_DAMAGED_FIX}") from None
    if checksums and md5.hexdigest() != FASHION_MNIST_MD5[name]:
        raise DataError(f"fashion_mnist file {str(path)!r} fails the MD5 check of the official "
                        f"files (damaged, or not the official data; data_checksums: false "
                        f"accepts another copy in the same format)")
    return target


def _read_idx(reader, folder: Path, name: str, tmp: Path, checksums: bool) -> torch.Tensor:
    """idx file `name` of `folder` through torchvision's `reader`."""
    unpacked = _unpacked(folder, name, tmp, checksums)
    try:
        return reader(str(unpacked))
    except (AssertionError, RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise DataError(f"fashion_mnist file {str(_idx_file(folder, name))!r} is not a valid "
                        f"idx file ({type(exc).__name__}: {_first_line(exc)}); "
                        f"{FASHION_MNIST_DAMAGED_FIX}") from None


def _download_fashion_mnist(train: TrainConfig) -> Path:
    from filelock import FileLock
    from torchvision import datasets

    root = Path(os.path.expanduser(train.data_dir))
    if not train.download:
        raise DataError(f"fashion_mnist not found in {str(root / 'FashionMNIST' / 'raw')!r}, "
                        f"{str(root)!r} or {str(SYSTEM_FASHION_MNIST)!r}; {FASHION_MNIST_FIX}")
    root.mkdir(parents=True, exist_ok=True)
    # Several workers on one node may start at once; one downloads, the others wait.
    with FileLock(str(root / ".raysweep-download.lock")):
        try:
            datasets.FashionMNIST(str(root), train=True, download=True)
        except Exception as exc:
            raise DataError(f"downloading fashion_mnist into {str(root)!r} failed "
                            f"({_first_line(exc)}); without internet: apt-get install "
                            f"dataset-fashion-mnist") from None
    return root / "FashionMNIST" / "raw"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- a user's image folder ---

IMAGE_SIZE = 32        # pixels, both sides: the zoo's input
TEST_SPLIT_SEED = 0    # the test split of a folder without train/ and test/ folders
SHUFFLE_SEED = 1       # the fixed order of a split's images (train_size takes the first N)
DEFAULT_TEST_FRACTION = 0.2
IMAGEFOLDER_FIX = ("point --data-dir at a folder of class sub-folders, or at a folder with "
                   "train/ and test/ folders of class sub-folders")


@dataclass(frozen=True)
class ImageFolderLayout:
    """Where a user's images are and how they split (see the module docstring)."""
    root: Path
    by_folders: bool               # train/ and test/ folders; else a test_fraction per class
    classes: tuple[str, ...]
    test_fraction: float           # share of every class held out for test (by_folders False)

    def load(self, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        samples = self.samples(split)
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
        chosen = [samples[i] for i in order[:limit].tolist()]
        images = torch.stack([read_image(path) for path, _ in chosen])
        return images, torch.tensor([label for _, label in chosen], dtype=torch.int64)

    def samples(self, split: str) -> list[tuple[str, int]]:
        """(path, label) of every image of `split`, labels by this layout's classes."""
        import torch
        if self.by_folders:
            found = _scan(self.root / split)
            if tuple(found.classes) != self.classes:
                raise DataError(
                    f"imagefolder {str(self.root / split)!r} has classes {found.classes} but "
                    f"{str(self.root / 'train')!r} has {list(self.classes)}; both splits need "
                    f"the same class sub-folders")
            return list(found.samples)
        found = _scan(self.root)
        labels = torch.tensor(found.targets)
        train_idx, test_idx = stratified_split(labels, self.test_fraction, TEST_SPLIT_SEED)
        return [found.samples[i] for i in (train_idx if split == "train" else test_idx).tolist()]


def _image_folder(train: TrainConfig) -> ImageFolderLayout:
    root = _folder_root(train)
    by_folders = (root / "train").is_dir() and (root / "test").is_dir()
    classes = tuple(_scan(root / "train" if by_folders else root).classes)
    if len(classes) < 2:
        raise DataError(f"imagefolder {str(root)!r} has {len(classes)} class sub-folder(s) "
                        f"{list(classes)}; a classifier needs at least 2")
    fraction = DEFAULT_TEST_FRACTION if train.test_fraction is None else train.test_fraction
    if not by_folders and not 0 < fraction < 1:
        raise DataError(f"test_fraction={fraction!r} for imagefolder {str(root)!r} (no train/ "
                        f"and test/ folders); allowed: 0 < test_fraction < 1")
    return ImageFolderLayout(root, by_folders, classes, fraction)


def _folder_root(train: TrainConfig) -> Path:
    root = Path(os.path.expanduser(train.data_dir))
    if not root.is_dir():
        raise DataError(f"imagefolder data_dir={str(root)!r} is not a folder; {IMAGEFOLDER_FIX}")
    return root


def _scan(folder: Path):
    """torchvision's ImageFolder over `folder` (classes and file list; nothing decoded)."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder), loader=read_image)
    except FileNotFoundError as exc:  # no class folder, or a class folder with no image
        raise DataError(f"imagefolder {str(folder)!r}: {_first_line(exc)}; {IMAGEFOLDER_FIX}"
                        ) from None


def read_image(path: str) -> torch.Tensor:
    """One image file → uint8 3×32×32: RGB, shorter side resized to 32 px (bilinear,
    antialiased), the centre 32×32 cropped."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as F

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"imagefolder image {path!r} is unreadable ({_first_line(exc)}); "
                        f"remove or replace it") from None
    x = F.pil_to_tensor(rgb)
    x = F.resize(x, [IMAGE_SIZE], antialias=True)  # one size: the shorter side
    return F.center_crop(x, [IMAGE_SIZE, IMAGE_SIZE]).contiguous()


# --- the synthetic stand-in ---

SYNTHETIC_MIX = 0.6     # largest share of another class's template in an image
SYNTHETIC_SHIFT = 2     # largest shift of a template, pixels (wrapping around)
SYNTHETIC_NOISE = 0.3   # share of uniform noise in every pixel


def synthetic(classes: int, size: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable stand-in for CIFAR. Each class is a smooth colour template; an image
    blends its class's template with a random other class's (that share uniform in
    [0, SYNTHETIC_MIX]), shifts it by up to SYNTHETIC_SHIFT px and mixes in noise.

    The blend makes it hard but not saturating: an image whose other-class share is
    near or above ½ is ambiguous (about 1 in 5), so top-1 tops out well below 100%,
    while most images are mostly their own class and are learnt within two epochs.
    Measured with a plain torch loop (1 thread, crop+flip, 10 classes, 3 epochs, test
    top-1 % after each epoch, seeds 0/1/2):
      conftest's TINY (461 train images after the validation split, batch 32, AdamW
      3e-3 per step, cosine): resnet_20 36/66/75, 27/67/79, 38/69/78; resnet_32
      37/60/74, 16/62/72, 16/41/67; at lr 1e-7: 9/9/9
      the smoke demo (1,382 train images, batch 64, SGD 0.05, cosine), seed 0:
      resnet_20 24/65/75, resnet_56 16/45/72 (the set before the blend: resnet_20
      30/100/100, resnet_56 20/31/82)
    Through the engine (a snapshot of 2026-11-24, conftest's smoke fixture then with ASHA, test
    top-1 %): resnet_20 seed 0 22/66/79 (completed), seed 1 30/44 (stopped by ASHA at
    epoch 2); resnet_32 30 and 26 at epoch 1; the lr-1e-7 variant 9, stopped at epoch 1.

    Templates are mirror-symmetric so that a horizontal flip keeps the class, and the
    same for both splits (fixed seed); blends, shifts and noise differ per split."""
    import torch
    gen = torch.Generator().manual_seed(20261123)
    coarse = torch.rand(classes, 3, 4, 4, generator=gen)
    coarse = (coarse + coarse.flip(-1)) / 2
    templates = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear",
                                                align_corners=False)
    low, high = templates.amin((1, 2, 3), keepdim=True), templates.amax((1, 2, 3), keepdim=True)
    templates = (templates - low) / (high - low)  # full contrast for every class
    gen.manual_seed(1 if split == "train" else 2)
    labels = torch.randint(0, classes, (size,), generator=gen)
    others = (labels + torch.randint(1, classes, (size,), generator=gen)) % classes
    share = (torch.rand(size, generator=gen) * SYNTHETIC_MIX)[:, None, None, None]
    shifts = torch.randint(-SYNTHETIC_SHIFT, SYNTHETIC_SHIFT + 1, (size, 2), generator=gen)
    noise = torch.rand(size, 3, 32, 32, generator=gen)
    blends = (1 - share) * templates[labels] + share * templates[others]
    images = torch.empty(size, 3, 32, 32)
    for i in range(size):
        images[i] = torch.roll(blends[i], tuple(shifts[i].tolist()), dims=(1, 2))
    images = (1 - SYNTHETIC_NOISE) * images + SYNTHETIC_NOISE * noise
    return (images * 255).round().to(torch.uint8), labels


def measure_stats(train: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1]) of a dataset's 3×32×32 training images, as
    DatasetInfo states them."""
    images, _ = load(train, "train")
    x = images.double().div_(255)
    return (tuple(round(v, 4) for v in x.mean((0, 2, 3)).tolist()),
            tuple(round(v, 4) for v in x.std((0, 2, 3)).tolist()))


def check_data(specs: list[TrialSpec]) -> None:
    """Every dataset the trials read is there and whole, and holds a global batch after
    the validation split: checked once, before any trial starts (and before Ray, by the
    CLI), instead of failing every trial."""
    seen: dict[str, int] = {}
    for spec in specs:
        data = {k: v for k, v in spec.train.to_dict().items() if k in TrainConfig.DATA}
        ident = json.dumps(data, sort_keys=True, default=list)
        if ident not in seen:
            check_available(spec.train)
            seen[ident] = train_images(spec.train)
        if spec.train.batch_size > seen[ident]:
            raise StudyError(f"batch_size={spec.train.batch_size} (global) is larger than the "
                             f"{seen[ident]} training images of {spec.label} after the "
                             f"validation split; allowed: batch_size <= {seen[ident]}")
