"""The batched tensor augmentation (raysweep.training.augment) against torchvision's per-sample
pipeline (data.train_transform), on CPU: kernels, draws, output distribution; and the
loader that splits global batches over workers with worker-invariant draws."""
from __future__ import annotations

import collections

import pytest
import torch
from torchvision.transforms import v2

from raysweep.training import augment as A
from raysweep.training import data
from raysweep.datasets import readers as datasets
from raysweep.study.parse import StudyError, parse_study

SYNTHETIC = datasets.info("synthetic")
MEAN, STD = SYNTHETIC.mean, SYNTHETIC.std


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return datasets.synthetic(10, 600, "train")[0]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def per_sample(augment: str, imgs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    transform = data.train_transform(augment, SYNTHETIC)
    return torch.stack([transform(im) for im in imgs])


@pytest.mark.parametrize("op", A.OPS[1:])
def test_every_kernel_matches_torchvision_at_every_magnitude(images, op):
    """Each op with a per-sample magnitude equals torchvision's tensor kernel called per
    image with that magnitude (Color may differ by one level from float rounding)."""
    ta = v2.TrivialAugmentWide()
    k = A.OPS.index(op)
    space = {**v2.AutoAugment._AUGMENTATION_SPACE, **ta._AUGMENTATION_SPACE}
    values = space[op][0](A.TA_BINS, 32, 32)
    magnitudes = [0.0] if values is None else values[::5].tolist()
    if space[op][1]:
        magnitudes += [-m for m in magnitudes]
    imgs = images[:40]
    fill = collections.defaultdict(lambda: None)
    for m in magnitudes:
        ref = torch.stack([ta._apply_image_or_video_transform(im, op, m, v2.InterpolationMode.NEAREST,
                                                              fill) for im in imgs])
        out = A.apply_ops(imgs, torch.full((len(imgs),), k), torch.full((len(imgs),), m,
                                                                     dtype=torch.float64))
        diff = (out.int() - ref.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005, (op, m)


def test_apply_ops_gives_each_sample_its_own_op(images):
    imgs = images[:3]
    ops = torch.tensor([A.OPS.index("Invert"), 0, A.OPS.index("Posterize")])
    out = A.apply_ops(imgs, ops, torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
    assert torch.equal(out[0], 255 - imgs[0])
    assert torch.equal(out[1], imgs[1])
    assert torch.equal(out[2], imgs[2] & 0b11000000)


def test_output_shape_dtype_and_input_untouched(images):
    imgs = images[:64].clone()
    out = A.BatchAugment("trivialaugment_erasing", MEAN, STD)(imgs, gen())
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    assert out.device == imgs.device and torch.isfinite(out).all()
    assert torch.equal(imgs, images[:64])


def test_randomness_is_per_sample_and_seeded(images):
    same = images[:1].expand(256, -1, -1, -1).contiguous()
    aug = A.BatchAugment("trivialaugment_erasing", MEAN, STD)
    out = aug(same, gen(1))
    distinct = {tuple(o.flatten()[::7].tolist()) for o in out}
    assert len(distinct) > 240  # one draw per sample, not one per batch
    assert torch.equal(out, aug(same, gen(1)))
    assert not torch.equal(out, aug(same, gen(2)))


def test_trivial_augment_draws_ops_magnitudes_and_signs_uniformly():
    aug = A.BatchAugment("trivialaugment", MEAN, STD)
    n = 70_000
    op, magnitude = aug.draw_trivial_augment(n, gen(3))
    counts = torch.bincount(op, minlength=len(A.OPS))[:14].double()
    expected = n / 14
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 34.5  # χ²(13 dof), p = 0.001
    assert counts.min() > 0 and (op < 14).all()  # Invert is AutoAugment's only
    rotate = magnitude[op == A.OPS.index("Rotate")]
    assert rotate.abs().max() == 135.0 and abs((rotate < 0).double().mean() - 0.5) < 0.03
    assert torch.equal(rotate.abs().unique(), torch.linspace(0, 135, 31, dtype=torch.float64))
    posterize = magnitude[op == A.OPS.index("Posterize")]
    assert (posterize >= 2).all() and set(posterize.unique().tolist()) == set(range(2, 9))
    assert (magnitude[op == 0] == 0).all()


def rate(mask: torch.Tensor) -> float:
    return mask.double().mean().item()


def test_flip_crop_and_erasing_frequencies_match_torchvision():
    """Flip rate, crop-into-the-padding rate and erased-rectangle rate per sample."""
    left_heavy = torch.zeros(2000, 3, 32, 32, dtype=torch.uint8)
    left_heavy[..., :16] = 200
    ours = A.BatchAugment("basic", MEAN, STD)(left_heavy, gen(5))
    theirs = per_sample("basic", left_heavy[:1000])
    flipped = lambda x: x[..., 12:20, 20:24].mean((1, 2, 3)) > x[..., 12:20, 8:12].mean((1, 2, 3))
    assert rate(flipped(ours)) == pytest.approx(0.5, abs=0.04)
    assert rate(flipped(ours)) == pytest.approx(rate(flipped(theirs)), abs=0.06)
    black = -MEAN[0] / STD[0]
    top_padded = lambda x: (x[:, :, 0] == black).all(dim=(1, 2))  # a padding row on top
    assert rate(top_padded(ours)) == pytest.approx(4 / 9, abs=0.04)
    assert rate(top_padded(ours)) == pytest.approx(rate(top_padded(theirs)), abs=0.06)

    ours = A.BatchAugment("trivialaugment_erasing", MEAN, STD)(left_heavy, gen(4))
    theirs = per_sample("trivialaugment_erasing", left_heavy[:1000])
    erased = lambda x: (x == 0).all(1).flatten(1).sum(1) >= 20  # 0 is no pixel's normalised value
    assert 0.4 < rate(erased(ours)) < 0.55
    assert rate(erased(ours)) == pytest.approx(rate(erased(theirs)), abs=0.05)


@pytest.mark.parametrize("augment", ["basic", "trivialaugment_erasing", "autoaugment"])
def test_pixel_statistics_match_torchvision_per_sample_pipeline(images, augment):
    """Same images through both pipelines: per-channel mean/std and the histogram of
    normalised values agree within sampling noise."""
    imgs = images.repeat(3, 1, 1, 1)
    ours = A.BatchAugment(augment, MEAN, STD)(imgs, gen(6))
    theirs = per_sample(augment, imgs, seed=7)
    assert torch.allclose(ours.mean((0, 2, 3)), theirs.mean((0, 2, 3)), atol=0.03)
    assert torch.allclose(ours.std((0, 2, 3)), theirs.std((0, 2, 3)), rtol=0.03)
    edges = torch.linspace(-2.0, 2.0, 21)
    h_ours = torch.histogram(ours.clamp(-2, 2).flatten(), edges)[0] / ours.numel()
    h_theirs = torch.histogram(theirs.clamp(-2, 2).flatten(), edges)[0] / theirs.numel()
    assert 0.5 * (h_ours - h_theirs).abs().sum() < 0.02  # total variation distance


def numbered(n: int) -> torch.Tensor:
    """n images whose every pixel is their own index (so a batch shows its rows)."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()


def test_workers_split_every_global_batch_and_the_tail_is_dropped():
    split = data.DeviceSplit(numbered(10), torch.arange(10), "cpu", lambda x, d: x.float())
    order = torch.tensor([7, 3, 9, 0, 4, 1, 8, 2, 6])
    one = [y.tolist() for _, y in data.train_batches(split, order, 4, 0, 1, 0, 0)]
    assert one == [[7, 3, 9, 0], [4, 1, 8, 2]]  # 9 // 4 = 2 steps; image 6 is dropped
    halves = [[y.tolist() for _, y in data.train_batches(split, order, 4, r, 2, 0, 0)]
              for r in (0, 1)]
    assert halves == [[[7, 3], [4, 1]], [[9, 0], [8, 2]]]
    for x, y in data.train_batches(split, order, 4, 1, 2, 0, 0):
        assert torch.equal(x[:, 0, 0, 0], y.float())


@pytest.mark.parametrize("chunk", [data.AUGMENT_CHUNK, 64])  # one augmentation call; nine
def test_an_image_gets_the_same_augmentation_on_any_worker_count(images, chunk, monkeypatch):
    monkeypatch.setattr(data, "AUGMENT_CHUNK", chunk)
    n, batch = 256, 32
    split = data.DeviceSplit(images[:n], torch.arange(n), "cpu",
                             A.BatchAugment("trivialaugment_erasing", MEAN, STD))
    order = data.epoch_order(n, seed=5, epoch=2)
    alone = {int(i): x for xs, ys in data.train_batches(split, order, batch, 0, 1, 11, 0)
             for x, i in zip(xs, ys)}
    for world in (2, 4):
        shared = {int(i): x for r in range(world)
                  for xs, ys in data.train_batches(split, order, batch, r, world, 11, 0)
                  for x, i in zip(xs, ys)}
        assert shared.keys() == alone.keys()
        assert all(torch.equal(shared[i], alone[i]) for i in alone)


def test_loader_draws_depend_only_on_the_draw_seed(images):
    split = data.DeviceSplit(images, torch.zeros(len(images), dtype=torch.long), "cpu",
                             A.BatchAugment("trivialaugment_erasing", MEAN, STD))
    order = torch.arange(0, 600, 2)
    first = [x for x, _ in data.train_batches(split, order, 100, 0, 1, 11, 0)]
    again = [x for x, _ in data.train_batches(split, order, 100, 0, 1, 11, 0)]
    other = [x for x, _ in data.train_batches(split, order, 100, 0, 1, 12, 0)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_pipeline_key_is_checked():
    body = {"name": "p", "models": ["resnet_20"]}
    assert parse_study(body, "p.yaml").defaults["pipeline"] == "auto"
    assert parse_study({**body, "defaults": {"pipeline": "torchvision"}},
                       "p.yaml").defaults["pipeline"] == "torchvision"
    with pytest.raises(StudyError, match="defaults.pipeline='pil' must be one of auto, tensor"):
        parse_study({**body, "defaults": {"pipeline": "pil"}}, "p.yaml")
