"""Paper 002's training augmentation, batched: a whole uint8 batch (N, 3, H, W) on any
device goes through random crop, flip, TrivialAugmentWide (or AutoAugment) and
RandomErasing with independent randomness per sample, drawn from one `torch.Generator`.

The draws (`Draws`) can be made for a larger batch than the one augmented: every worker
of a trial draws for the whole chunk of global batches and applies only its own rows, so
an image gets the same augmentation whichever worker (and however many) trains on it.

The kernels reproduce torchvision's tensor kernels (`transforms.v2.functional`) with a
per-sample magnitude instead of one scalar per call, and the op tables are torchvision's
own, so the output distribution is the per-sample pipeline's (`data.train_transform`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf

# torchvision is imported where a policy or kernel needs it, not here: its import pulls in
# torch._dynamo (~2.5 s of CPU per process), which the driver of `raysweep run` would
# otherwise pay for nothing (a trial's first optimizer step imports it anyway).

# Every op either policy can pick; an op's id is its index here.
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Invert")
TA_BINS = 31  # TrivialAugmentWide's default num_magnitude_bins
AA_BINS = 10  # AutoAugment's fixed number of magnitude bins


def _table(space: dict, bins: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(magnitudes OPS×bins, signed OPS) from a torchvision augmentation space."""
    mags, signed = torch.zeros(len(OPS), bins, dtype=torch.float64), torch.zeros(len(OPS), dtype=torch.bool)
    for name, (fn, is_signed) in space.items():
        values = fn(bins, size, size)
        if values is not None:
            mags[OPS.index(name)] = values.double()
        signed[OPS.index(name)] = is_signed
    return mags, signed


class BatchAugment:
    """`augment` level of `data.train_transform` for whole batches: uint8 in, normalised
    float32 out. MixUp/CutMix stay in the train loop (they mix labels too)."""

    def __init__(self, augment: str, mean, std, size: int = 32):
        self.size = size
        self.policy = {"trivialaugment": "ta", "trivialaugment_erasing": "ta", "mixup_cutmix": "ta",
                       "autoaugment": "aa"}.get(augment)
        self.erasing = augment in ("trivialaugment_erasing", "mixup_cutmix")
        self.mean, self.std = tuple(mean), tuple(std)
        if self.policy:
            from torchvision.transforms import v2
        if self.policy == "ta":
            self.ops = torch.tensor([OPS.index(n) for n in v2.TrivialAugmentWide._AUGMENTATION_SPACE])
            self.mags, self.signed = _table(v2.TrivialAugmentWide._AUGMENTATION_SPACE, TA_BINS, size)
        elif self.policy == "aa":
            self.mags, self.signed = _table(v2.AutoAugment._AUGMENTATION_SPACE, AA_BINS, size)
            policies = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies
            # sub-policy × step: op id, probability, magnitude bin (0 where it has none)
            self.aa_ops = torch.tensor([[OPS.index(op) for op, _, _ in p] for p in policies])
            self.aa_probs = torch.tensor([[prob for _, prob, _ in p] for p in policies])
            self.aa_bins = torch.tensor([[b or 0 for _, _, b in p] for p in policies])

    def __call__(self, images: torch.Tensor, gen: "torch.Generator | Draws") -> torch.Tensor:
        gen = gen if isinstance(gen, Draws) else Draws(gen, len(images))
        x = hflip(random_crop(images, gen, padding=4), gen)
        if self.policy == "ta":
            x = self.trivial_augment(x, gen)
        elif self.policy == "aa":
            x = self.auto_augment(x, gen)
        x = normalize(x, self.mean, self.std)
        return random_erasing(x, gen) if self.erasing else x

    def trivial_augment(self, x: torch.Tensor, gen: "Draws") -> torch.Tensor:
        op, magnitude = self.draw_trivial_augment(len(x), gen)
        return apply_ops(x, op.to(x.device), magnitude.to(x.device))

    def draw_trivial_augment(self, n: int, gen: "torch.Generator | Draws"
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(op id, signed magnitude) per sample: the op uniform over the 14, a uniform
        magnitude bin and, for signed ops, a random sign (`v2.TrivialAugmentWide.forward`)."""
        gen = gen if isinstance(gen, Draws) else Draws(gen, n)
        op = self.ops[_randint(len(self.ops), n, gen).cpu()]
        return op, self._signed_magnitude(op, _randint(TA_BINS, n, gen).cpu(), n, gen)

    def auto_augment(self, x: torch.Tensor, gen: "Draws") -> torch.Tensor:
        """A uniform sub-policy per sample; each of its two steps runs with its probability
        (as `v2.AutoAugment.forward` per image)."""
        n = len(x)
        policy = _randint(len(self.aa_ops), n, gen).cpu()
        for step in range(2):
            op = self.aa_ops[policy, step]
            run = _rand(gen, n).cpu() <= self.aa_probs[policy, step]
            op = torch.where(run, op, 0)
            magnitude = self._signed_magnitude(op, self.aa_bins[policy, step], n, gen)
            x = apply_ops(x, op.to(x.device), magnitude.to(x.device))
        return x

    def _signed_magnitude(self, op, bins, n, gen) -> torch.Tensor:
        flip = (_rand(gen, n).cpu() <= 0.5) & self.signed[op]
        return torch.where(flip, -1.0, 1.0).double() * self.mags[op, bins]


class Draws:
    """The random numbers of a batch that is part of a larger one: each draw is made for
    all `total` rows from `gen` and then cut to `rows` (default: all of them)."""

    def __init__(self, gen: torch.Generator, total: int, rows: torch.Tensor | None = None):
        self.gen, self.total = gen, total
        self.rows = rows.to(gen.device) if rows is not None else None
        self.device = gen.device

    def randint(self, high: int) -> torch.Tensor:
        return self._cut(torch.randint(high, (self.total,), generator=self.gen,
                                       device=self.device))

    def rand(self, *tail: int) -> torch.Tensor:
        return self._cut(torch.rand(self.total, *tail, generator=self.gen, device=self.device))

    def _cut(self, drawn: torch.Tensor) -> torch.Tensor:
        return drawn if self.rows is None else drawn[self.rows]


def _randint(high: int, n: int, gen: Draws) -> torch.Tensor:
    return gen.randint(high)


def _rand(gen: Draws, *shape: int) -> torch.Tensor:
    return gen.rand(*shape[1:])


# --- crop, flip, normalise, erase ---

def random_crop(x: torch.Tensor, gen: Draws, padding: int) -> torch.Tensor:
    """`RandomCrop(size, padding)` with zero fill: a per-sample window of the padded batch."""
    n, _, h, w = x.shape
    padded = nnf.pad(x, (padding,) * 4)
    top = _randint(2 * padding + 1, n, gen).to(x.device)
    left = _randint(2 * padding + 1, n, gen).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # N,H,W,C
    return out.permute(0, 3, 1, 2).contiguous()


def hflip(x: torch.Tensor, gen: Draws, p: float = 0.5) -> torch.Tensor:
    flip = (_rand(gen, len(x)) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 → float32 scaled to [0, 1] and normalised, in one multiply-add."""
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    return torch.addcmul(-mean_t / std_t, x.float(), 1 / (255 * std_t))


def random_erasing(x: torch.Tensor, gen: Draws, p: float = 0.5,
                   scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts: int = 10) -> torch.Tensor:
    """`RandomErasing(p, scale, ratio, value=0)`: per sample, the first of 10 drawn
    rectangles that fits, as torchvision's rejection loop; none fits → left as is."""
    n, _, h, w = x.shape
    area = h * w * (scale[0] + (scale[1] - scale[0]) * _rand(gen, n, attempts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(gen, n, attempts))
    eh = torch.sqrt(area * aspect).round().long()
    ew = torch.sqrt(area / aspect).round().long()
    fits = (eh < h) & (ew < w)
    first = fits.int().argmax(1, keepdim=True)
    eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
    top = (_rand(gen, n) * (h - eh + 1)).floor().long()
    left = (_rand(gen, n) * (w - ew + 1)).floor().long()
    erase = (_rand(gen, n) < p) & fits.any(1)
    rows = torch.arange(h, device=gen.device)
    cols = torch.arange(w, device=gen.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]).to(x.device)
    return x.masked_fill(mask[:, None], 0.0)


# --- the augmentation ops, one per-sample magnitude each ---

def apply_ops(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Sample i gets OPS[op[i]] at magnitude[i]; each op runs once on its samples."""
    out = x.clone()
    for k in op.unique().tolist():
        if k == 0:
            continue
        idx = (op == k).nonzero()[:, 0]
        out[idx] = KERNELS[OPS[k]](x[idx], magnitude[idx])
    return out


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.float().view(-1, 1, 1, 1)


def _blend(img: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # 1 - ratio in float64 before the cast, as torchvision's scalar alpha
    return torch.addcmul(img * _per_sample(ratio), other, _per_sample(1.0 - ratio.double())
                         ).clamp_(0, 255).to(torch.uint8)


def _gray_floor(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(-3)


def _sharpness(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=img.device).expand(3, 1, 3, 3)
    out = img.float()
    blurred = nnf.conv2d(out, kernel, groups=3).round_()
    view = out[..., 1:-1, 1:-1]
    view.add_((blurred - view) * (1.0 - _per_sample(1.0 + m)))  # borders stay as they are
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    bits = m.long().view(-1, 1, 1, 1)
    return img & ((255 << (8 - bits)) & 255).to(torch.uint8)


def _solarize(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.where(img >= _per_sample(255.0 * m), 255 - img, img)


def _affine(img: torch.Tensor, angle, tx, ty, shear_x, shear_y, centred: bool) -> torch.Tensor:
    """`F.affine`/`F.rotate` (nearest, zero fill) with a matrix per sample: torchvision's
    `_get_inverse_affine_matrix` and `_affine_grid`, batched. Angles in degrees."""
    n, _, h, w = img.shape
    rot, sx, sy = (torch.deg2rad(v.double()) for v in (angle, shear_x, shear_y))
    cx, cy = (0.0, 0.0) if centred else (-w * 0.5, -h * 0.5)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    theta = torch.stack([m0, m1, m2, m3, m4, m5], 1).float().view(n, 2, 3)
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=img.device)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=img.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=img.device)], -1)
    scale = torch.tensor([0.5 * w, 0.5 * h], device=img.device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)
    out = nnf.grid_sample(img.float(), grid.view(n, h, w, 2), mode="nearest",
                          padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


def _tv_functional():
    from torchvision.transforms.v2 import functional
    return functional


def _zero(m):
    return torch.zeros_like(m)


KERNELS = {
    "ShearX": lambda x, m: _affine(x, _zero(m), 0.0, 0.0, torch.rad2deg(torch.atan(m)), _zero(m), False),
    "ShearY": lambda x, m: _affine(x, _zero(m), 0.0, 0.0, _zero(m), torch.rad2deg(torch.atan(m)), False),
    "TranslateX": lambda x, m: _affine(x, _zero(m), m.trunc(), 0.0, _zero(m), _zero(m), True),
    "TranslateY": lambda x, m: _affine(x, _zero(m), 0.0, m.trunc(), _zero(m), _zero(m), True),
    "Rotate": lambda x, m: _affine(x, -m, 0.0, 0.0, _zero(m), _zero(m), True),
    "Brightness": lambda x, m: (x * _per_sample(1.0 + m)).clamp_(0, 255).to(torch.uint8),
    "Color": lambda x, m: _blend(x, _gray_floor(x), 1.0 + m),
    "Contrast": lambda x, m: _blend(x, _gray_floor(x).mean((-3, -2, -1), keepdim=True), 1.0 + m),
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": lambda x, m: _tv_functional().autocontrast(x),  # torchvision's batched kernel
    "Equalize": lambda x, m: _tv_functional().equalize(x),
    "Invert": lambda x, m: 255 - x,
}
