"""raysweep.datasets: the readers on tiny files written in the real on-disk layouts, the
conversion to the zoo's 3×32×32 input, the stated statistics, one-line errors for
missing or damaged data, the image-folder splits and the validation split. No Ray,
except the engine tests at the end (a one-epoch study per new dataset)."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from support.studies import TINY, run, write_study
from support.factories import TRAIN
from raysweep.datasets import readers as datasets
from raysweep.datasets import writers
from raysweep.errors import DataError
from raysweep.store.records import read_records


def config(tmp_path, dataset: str, **changes):
    values = dict(dataset=dataset, data_dir=str(tmp_path), data_checksums=False,
                  train_size=None, test_size=None,
                  synthetic_classes=10 if dataset == "synthetic" else None)
    return TRAIN.replace(**{**values, **changes})


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    """Debian's folder out of the search, so that the tests see only the files they
    write whether or not dataset-fashion-mnist is installed here."""
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "not-installed")


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def idx_arrays(folder, split: str, compressed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The written files parsed independently of torchvision (header: magic, dims)."""
    out = []
    for name in datasets.FASHION_MNIST_FILES[split]:
        opener = gzip.open if compressed else open
        with opener(folder / (name + (".gz" if compressed else "")), "rb") as f:
            blob = f.read()
        dims = blob[3]
        shape = [int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
        out.append(np.frombuffer(blob, np.uint8, offset=4 + 4 * dims).reshape(shape))
    return out[0], out[1]


# --- Fashion-MNIST ---

def test_fashion_mnist_files_read_as_torchvision_reads_them(tmp_path, no_system_copy):
    from torchvision.datasets import FashionMNIST

    folder = writers.write_fashion_mnist(tmp_path, n_train=30, n_test=20, seed=3,
                                          compressed=False)
    train = config(tmp_path, "fashion_mnist")
    for split, n in (("train", 30), ("test", 20)):
        images, labels = datasets.load(train, split)
        theirs = FashionMNIST(str(tmp_path), train=split == "train")  # the real client
        raw, raw_labels = idx_arrays(folder, split, compressed=False)
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.equal(labels, theirs.targets) and labels.tolist() == raw_labels.tolist()
        # 28×28 sits at rows/columns 2..29, unchanged; the 2-pixel border is black;
        # R, G and B are the grey channel.
        assert torch.equal(images[:, 0, 2:30, 2:30], theirs.data)
        assert images[:, :, :2].max() == 0 and images[:, :, 30:].max() == 0
        assert images[:, :, :, :2].max() == 0 and images[:, :, :, 30:].max() == 0
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert datasets.num_classes(train) == 10


def test_fashion_mnist_gzip_and_flat_layouts_and_sizes(tmp_path, no_system_copy):
    """The official .gz archives in torchvision's folder, and the four files directly in
    data_dir (Debian's layout: --data-dir /usr/share/datasets/fashion-mnist)."""
    nested = writers.write_fashion_mnist(tmp_path / "a", 40, 10, seed=5)
    flat = writers.write_fashion_mnist(tmp_path / "b", 40, 10, seed=5, subfolder="")
    assert sorted(p.name for p in nested.iterdir()) == sorted(p.name for p in flat.iterdir()) \
        == sorted(f"{name}.gz" for name in datasets.FASHION_MNIST_MD5)
    raw, raw_labels = idx_arrays(nested, "train")
    a = datasets.load(config(tmp_path / "a", "fashion_mnist"), "train")
    b = datasets.load(config(tmp_path / "b", "fashion_mnist", train_size=25), "train")
    assert torch.equal(a[0][:, 1, 2:30, 2:30], torch.from_numpy(raw.copy()))
    assert a[1].tolist() == raw_labels.tolist()
    assert torch.equal(b[0], a[0][:25]) and torch.equal(b[1], a[1][:25])


def test_missing_fashion_mnist_is_one_line_naming_the_paths_and_the_fixes(tmp_path,
                                                                           no_system_copy):
    with pytest.raises(DataError) as err:
        datasets.check_available(config(tmp_path, "fashion_mnist"))
    text = one_line(err)
    assert str(tmp_path / "FashionMNIST" / "raw") in text and str(tmp_path) in text
    assert str(datasets.SYSTEM_FASHION_MNIST) in text
    for fix in ("apt-get install dataset-fashion-mnist", "--data-dir", "--download"):
        assert fix in text


def test_damaged_fashion_mnist_files_are_one_line_naming_the_file(tmp_path, no_system_copy):
    folder = writers.write_fashion_mnist(tmp_path, 30, 10)
    train = config(tmp_path, "fashion_mnist")
    datasets.check_available(train)

    images_gz = folder / "train-images-idx3-ubyte.gz"
    blob = images_gz.read_bytes()
    images_gz.write_bytes(blob[:len(blob) // 2])  # a truncated download
    with pytest.raises(DataError) as err:
        datasets.check_available(train)
    assert str(images_gz) in one_line(err) and "damaged" in one_line(err)

    with gzip.open(images_gz, "wb") as f:  # a whole gzip of a wrong idx file
        f.write(b"\x00\x00\x08\x03" + (30).to_bytes(4, "big") + b"\x00" * 100)
    with pytest.raises(DataError) as err:
        datasets.check_available(train)
    assert str(images_gz) in one_line(err) and "not a valid idx file" in one_line(err)

    images_gz.write_bytes(blob)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        datasets.check_available(train)
    assert "lacks t10k-labels-idx1-ubyte" in one_line(err) and str(folder) in one_line(err)


def test_fashion_mnist_checksums_refuse_files_that_are_not_the_official_ones(tmp_path,
                                                                             no_system_copy):
    writers.write_fashion_mnist(tmp_path, 20, 10)
    with pytest.raises(DataError) as err:
        datasets.check_available(config(tmp_path, "fashion_mnist", data_checksums=True))
    assert "fails the MD5 check" in one_line(err) and "data_checksums: false" in one_line(err)


@pytest.mark.skipif(not datasets.SYSTEM_FASHION_MNIST.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist "
                           "(apt-get install dataset-fashion-mnist)")
def test_debians_fashion_mnist_is_found_and_matches_the_stated_facts(tmp_path):
    train = config(tmp_path / "empty", "fashion_mnist", data_checksums=True)
    assert datasets.fashion_mnist_folder(train.data_dir) == datasets.SYSTEM_FASHION_MNIST
    images, labels = datasets.load(train, "train")
    test_images, test_labels = datasets.load(train, "test")
    assert images.shape == (60_000, 3, 32, 32) and test_images.shape == (10_000, 3, 32, 32)
    assert labels.bincount().tolist() == [6000] * 10
    assert test_labels.bincount().tolist() == [1000] * 10
    info = datasets.info("fashion_mnist")
    mean, std = datasets.measure_stats(train)
    assert mean == pytest.approx(info.mean, abs=1e-4) and std == pytest.approx(info.std, abs=1e-4)


def test_every_dataset_states_its_classes_statistics_and_validation_split():
    for name, info in datasets.DATASETS.items():
        assert info.name == name and 0 < info.val_fraction < 1
        assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    fm = datasets.info("fashion_mnist")
    assert fm.classes == len(fm.class_names) == 10 and fm.class_names[9] == "Ankle boot"
    # 5,000 of the 60,000 training images are held out: 55,000 train as in LeCun's split.
    assert round(60_000 * fm.val_fraction) == 5_000
    assert fm.mean == (0.2190,) * 3 and fm.std == (0.3318,) * 3
    with pytest.raises(DataError, match="dataset='mnist' is unknown; allowed: cifar100"):
        datasets.info("mnist")


# --- a user's image folder ---

def test_image_folder_with_a_test_fraction(tmp_path):
    root = writers.write_image_folder(tmp_path / "pets", ["cat", "dog", "eel"], per_class=10)
    train = config(root, "imagefolder")
    images, labels = datasets.load(train, "train")
    test_images, test_labels = datasets.load(train, "test")
    assert datasets.num_classes(train) == 3
    # 20% of every class tests (the default test_fraction), the rest trains.
    assert labels.bincount().tolist() == [8, 8, 8] and test_labels.bincount().tolist() == [2, 2, 2]
    assert images.shape == (24, 3, 32, 32) and images.dtype == torch.uint8
    flat = lambda x: {bytes(img.flatten().tolist()) for img in x}  # noqa: E731
    assert not flat(images) & flat(test_images)  # disjoint
    # A fixed shuffle, so that train_size takes every class, the same on every read.
    assert labels.tolist() != sorted(labels.tolist())
    again = datasets.load(train.replace(train_size=6, split_seed=9), "train")
    assert torch.equal(again[0], images[:6]) and torch.equal(again[1], labels[:6])


def test_image_folder_split_by_train_and_test_folders(tmp_path):
    root = writers.write_image_folder(tmp_path / "f", 4, per_class=5, by_folders=True,
                                       test_per_class=2)
    train = config(root, "imagefolder")
    assert datasets.num_classes(train) == 4
    assert datasets.load(train, "train")[1].bincount().tolist() == [5] * 4
    assert datasets.load(train, "test")[1].bincount().tolist() == [2] * 4
    shutil.rmtree(root / "test" / "class_3")
    with pytest.raises(DataError) as err:
        datasets.check_available(train)
    assert str(root / "test") in one_line(err) and "same class sub-folders" in one_line(err)


def test_image_conversion_keeps_the_centre_and_the_colours(tmp_path):
    """Shorter side to 32 px, centre 32×32 kept: a 64×32 image whose outer quarters are
    red and blue keeps only its green middle; a 20×20 grey image becomes 3 equal channels."""
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16] = (255, 0, 0)
    wide[:, 16:48] = (0, 255, 0)
    wide[:, 48:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(np.full((20, 20), 77, np.uint8), mode="L").save(tmp_path / "grey.png")
    x = datasets.read_image(str(tmp_path / "wide.png"))
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert x[1].min() == 255 and x[0].max() == 0 and x[2].max() == 0
    assert torch.equal(datasets.read_image(str(tmp_path / "grey.png")),
                       torch.full((3, 32, 32), 77, dtype=torch.uint8))


def test_bad_image_folders_are_one_line_naming_the_path(tmp_path):
    with pytest.raises(DataError) as err:
        datasets.check_available(config(tmp_path / "nowhere", "imagefolder"))
    assert f"data_dir={str(tmp_path / 'nowhere')!r} is not a folder" in one_line(err)

    root = writers.write_image_folder(tmp_path / "one", ["only"], per_class=3)
    with pytest.raises(DataError) as err:
        datasets.check_available(config(root, "imagefolder"))
    assert "at least 2" in one_line(err) and str(root) in one_line(err)

    root = writers.write_image_folder(tmp_path / "bad", 2, per_class=3)
    (root / "class_1" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        datasets.check_available(config(root, "imagefolder"))
    assert str(root / "class_1" / "9.png") in one_line(err) and "unreadable" in one_line(err)

    (root / "class_1" / "9.png").unlink()
    (root / "empty").mkdir()
    with pytest.raises(DataError) as err:
        datasets.check_available(config(root, "imagefolder"))
    assert "empty" in one_line(err) and str(root) in one_line(err)


def test_fingerprint_names_the_folders_content_not_its_place(tmp_path):
    root = writers.write_image_folder(tmp_path / "a", 2, per_class=3)
    first = datasets.fingerprint(config(root, "imagefolder"))
    copy = shutil.copytree(root, tmp_path / "b")
    assert datasets.fingerprint(config(copy, "imagefolder")) == first and len(first) == 12
    (copy / "class_0" / "0.png").rename(copy / "class_1" / "x.png")  # same bytes, other class
    assert datasets.fingerprint(config(copy, "imagefolder")) != first
    assert datasets.fingerprint(config(tmp_path, "synthetic")) is None


# --- the validation split, the synthetic set ---

def test_stratified_split_keeps_class_proportions_and_ignores_the_trial_seed():
    labels = torch.tensor([0] * 100 + [1] * 50 + [2] * 20)[torch.randperm(170)]
    torch.manual_seed(1)
    keep, held = datasets.stratified_split(labels, 0.1, split_seed=4)
    assert labels[held].bincount().tolist() == [10, 5, 2]
    assert sorted(keep.tolist() + held.tolist()) == list(range(170))
    torch.manual_seed(2)  # another trial seed: the global RNG is not used
    assert torch.equal(datasets.stratified_split(labels, 0.1, split_seed=4)[1], held)
    assert not torch.equal(datasets.stratified_split(labels, 0.1, split_seed=5)[1], held)
    keep, held = datasets.stratified_split(labels, 0.0, split_seed=4)
    assert len(keep) == 170 and len(held) == 0


def test_synthetic_set_is_learnable_but_does_not_saturate():
    """A nearest-class-mean classifier (what any network beats) is far above chance yet
    far from 100%: about 1 image in 5 blends in as much of another class. (The set before
    the blend scored 100% here, and resnet_20 reached 100% in its second epoch.)"""
    train_x, train_y = datasets.synthetic(10, 2000, "train")
    test_x, test_y = datasets.synthetic(10, 1000, "test")
    means = torch.stack([train_x[train_y == c].float().mean(0) for c in range(10)]).flatten(1)
    predicted = torch.cdist(test_x.float().flatten(1), means).argmin(1)
    accuracy = (predicted == test_y).float().mean().item()
    assert 0.5 < accuracy < 0.92


# --- through the engine (a one-epoch study per new dataset) ---

def test_fashion_mnist_study_runs_through_the_worker_loop(ray_local, tmp_path, no_system_copy):
    data_dir = tmp_path / "data"
    writers.write_fashion_mnist(data_dir, n_train=256, n_test=64)
    path = write_study(tmp_path, "fm", defaults={
        **TINY, "dataset": "fashion_mnist", "data_dir": str(data_dir),
        "data_checksums": False, "train_size": None, "test_size": None, "epochs": 1},
        models=["resnet_20"], asha={"enabled": False})
    [rec] = read_records(run(path, tmp_path / "runs", inline=True))
    assert rec.status == "completed" and rec.train.dataset == "fashion_mnist"
    [first] = rec.history
    assert first.val_top1 is not None and 0 <= first.test_top1 <= 100

    # Missing data: refused before any trial starts, with no record written.
    shutil.rmtree(data_dir)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        run(path, tmp_path / "runs", "missing")
    assert not list((tmp_path / "runs" / "missing").glob("records/*.json"))


def test_image_folder_study_runs_through_the_worker_loop(ray_local, tmp_path):
    root = writers.write_image_folder(tmp_path / "pets", ["cat", "dog", "eel"], per_class=60)
    path = write_study(tmp_path, "pets", defaults={
        **TINY, "dataset": "imagefolder", "data_dir": str(root), "train_size": None,
        "test_size": None, "epochs": 1}, models=["resnet_20"], asha={"enabled": False})
    [rec] = read_records(run(path, tmp_path / "runs", inline=True))
    assert rec.status == "completed" and rec.segments[0].runner == "inline"
    assert rec.train.data_fingerprint == datasets.fingerprint(rec.train)
    assert len(rec.history) == 1 and 0 <= rec.history[0].test_top1 <= 100
