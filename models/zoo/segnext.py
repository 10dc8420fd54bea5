"""SegNeXt's MSCAN encoder (Guo et al. 2022) as a classifier, written here (timm has no
MSCA), plus the VAN-style stage skeleton that LSKNet (models/zoo/lsknet.py) shares.

Block (VAN / MSCAN / LSKNet): x + LS(proj_2(mixer(GELU(proj_1(BN(x)))))) then
x + LS(FFN(BN(x))), FFN = 1x1 expand, 3x3 depthwise, GELU, 1x1. Stages end in LayerNorm;
the head is GAP + Linear.

MSCA: a 5x5 depthwise conv, then three strip branches (1x7 + 7x1, 1x11 + 11x1, 1x21 + 21x1
depthwise) added to it, a 1x1 conv mixing channels, and the result multiplies the input.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d, LayerScale2d

from models.layers import STEMS
from models.registry import register_model

STRIP_KERNELS = (7, 11, 21)


def dw_conv(dim: int, kh: int, kw: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, (kh, kw), padding=(dilation * (kh // 2), dilation * (kw // 2)),
                     dilation=dilation, groups=dim)


class MSCA(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv0 = dw_conv(dim, 5, 5)
        self.strips = nn.ModuleList(nn.Sequential(dw_conv(dim, 1, k), dw_conv(dim, k, 1))
                                    for k in STRIP_KERNELS)
        self.mix = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.conv0(x)
        attn = attn + sum(strip(attn) for strip in self.strips)
        return self.mix(attn) * x


class SpatialAttention(nn.Module):
    def __init__(self, dim: int, mixer: nn.Module):
        super().__init__()
        self.proj_1, self.act, self.mixer = nn.Conv2d(dim, dim, 1), nn.GELU(), mixer
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.mixer(self.act(self.proj_1(x))))


class VanBlock(nn.Module):
    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: int, ls_init: float = 1e-2):
        super().__init__()
        hidden = dim * mlp_ratio
        self.norm1, self.attn = nn.BatchNorm2d(dim), SpatialAttention(dim, mixer)
        self.norm2 = nn.BatchNorm2d(dim)
        self.ffn = nn.Sequential(nn.Conv2d(dim, hidden, 1), dw_conv(hidden, 3, 3), nn.GELU(),
                                 nn.Conv2d(hidden, dim, 1))
        self.ls1, self.ls2 = LayerScale2d(dim, ls_init), LayerScale2d(dim, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.ffn(self.norm2(x)))


class VanNet(nn.Module):
    """Four stages; `stem` maps 3 -> dims[0] channels, later stages downsample by a strided
    3x3 conv + BN; `mixer(dim)` is the block's spatial attention (MSCA, LSK)."""

    def __init__(self, stem: nn.Module, dims, depths, mlp_ratios, mixer: Callable[[int], nn.Module],
                 num_classes: int = 100):
        super().__init__()
        layers = [stem]
        for i, (dim, depth, ratio) in enumerate(zip(dims, depths, mlp_ratios)):
            if i:
                layers += [nn.Conv2d(dims[i - 1], dim, 3, 2, 1), nn.BatchNorm2d(dim)]
            layers += [VanBlock(dim, mixer(dim), ratio) for _ in range(depth)] + [LayerNorm2d(dim)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def mscan_stem(dim: int, stem: str) -> nn.Sequential:
    """MSCAN's two 3x3 convs, each stride 2 ("paper") or stride 1 ("cifar")."""
    s = 2 if stem == "paper" else 1
    return nn.Sequential(nn.Conv2d(3, dim // 2, 3, s, 1), nn.BatchNorm2d(dim // 2), nn.GELU(),
                         nn.Conv2d(dim // 2, dim, 3, s, 1), nn.BatchNorm2d(dim))


@register_model(family="attention", recipe="adamw", options={"stem": STEMS},
                paper_params=850_000, source="Guo et al. 2022 (SegNeXt); paper 002 Table 1")
def segnext_mscan_tiny(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    # MSCAN-T's depths at half its widths (32, 64, 160, 256) with FFN ratio 4 (MSCAN-T: 8, 8,
    # 4, 4): the reading that gives the paper's 0.85 M (858,308); MSCAN-T itself is 3.93 M
    dims = (16, 32, 64, 128)
    return VanNet(mscan_stem(dims[0], stem), dims, (3, 3, 5, 2), (4, 4, 4, 4), MSCA, num_classes)
