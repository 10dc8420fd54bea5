"""Tiny data sets written in each reader's real on-disk layout, for tests and benchmarks
(and the GPU check) where the real CIFAR-100 cannot be downloaded. Random or learnable
images; the MD5 sums differ from the official files' (read with data_checksums: false)."""
from __future__ import annotations

import gzip
from pathlib import Path

from raysweep.datasets.readers import FASHION_MNIST_FILES


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


def write_fashion_mnist(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0,
                        compressed: bool = True, subfolder: str = "FashionMNIST/raw") -> Path:
    """Tiny Fashion-MNIST files in the official idx format and names (big-endian header,
    uint8 pixels), gzip-compressed as the official archives (and Debian's copy) or
    unpacked as torchvision leaves them, in `root/subfolder` (torchvision's layout by
    default; "" for the flat layout). Class c is noise plus a bright band at rows
    2c+4..2c+7, so a model can learn it. The MD5s differ from the official files': read
    with data_checksums: false. Returns the folder holding the files."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = Path(root) / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 96, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4:2 * c + 8] = 230
        image_name, label_name = FASHION_MNIST_FILES[split]
        _write_idx(folder / image_name, 0x0803, images, compressed)
        _write_idx(folder / label_name, 0x0801, labels, compressed)
    return folder


def _write_idx(path: Path, magic: int, array, compressed: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = (lambda: gzip.open(f"{path}.gz", "wb")) if compressed else (lambda: open(path, "wb"))
    with opener() as f:
        f.write(header + array.tobytes())


def write_image_folder(root: Path, classes: int | list[str], per_class: int, by_folders: bool = False,
                       test_per_class: int | None = None, size: tuple[int, int] = (48, 40),
                       seed: int = 0, ext: str = "png") -> Path:
    """A user's image folder: `root/<class>/<i>.<ext>` (or `root/train/<class>/...` and
    `root/test/<class>/...` with by_folders), images of `size` (width, height) pixels,
    each its class's colour plus noise (learnable). `classes`: names, or a count."""
    import numpy as np
    from PIL import Image

    names = [f"class_{i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (len(names), 3))
    splits = {"train": per_class, "test": test_per_class or max(1, per_class // 4)} \
        if by_folders else {"": per_class}
    for split, count in splits.items():
        for c, name in enumerate(names):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-40, 41, (size[1], size[0], 3))
                pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{ext}")
    return Path(root)
