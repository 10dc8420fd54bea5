"""HorNet (Rao et al. 2022): ConvNeXt-style stages whose spatial mixer is gnConv, the
recursive gated convolution written here (timm has no HorNet).

gnConv of order n: a 1x1 conv gives p0 (C/2^(n-1) channels) and n gates q0..q(n-1)
(C/2^(n-1) .. C channels) that share one 7x7 depthwise conv; p(k+1) = 1x1(pk) * qk, then
a 1x1 output projection. Stage orders 2, 3, 4, 5 as in the HorNet paper.

"Small config" (paper 002: hornet_tiny, 4.63 M): base width 32 (HorNet-T: 64) and ConvNeXt-T's
depths (3, 3, 9, 3) (HorNet-T: 2, 3, 18, 2), which gives 4,632,132 parameters; HorNet-T's
depths at width 32 would be 5.67 M.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d, LayerScale2d, Mlp

from models.layers import STEMS, cifar_stem_conv
from models.registry import register_model

ORDERS = (2, 3, 4, 5)


class GnConv(nn.Module):
    def __init__(self, dim: int, order: int = 5, kernel_size: int = 7, scale: float = 1 / 3):
        super().__init__()
        if dim % 2 ** (order - 1):
            raise ValueError(f"gnConv of order {order} needs dim divisible by {2 ** (order - 1)}")
        self.dims = [dim // 2 ** i for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), kernel_size,
                                padding=kernel_size // 2, groups=sum(self.dims))
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1)
                                 for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.scale = scale  # HorNet's 1/3 keeps the product of n gates from blowing up

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        p, abc = self.proj_in(x).split((self.dims[0], sum(self.dims)), dim=1)
        return p, list((self.dwconv(abc) * self.scale).split(self.dims, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, gates = self.gates(x)
        p = p * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            p = pw(p) * gate
        return self.proj_out(p)


class HorBlock(nn.Module):
    def __init__(self, dim: int, order: int, ls_init: float = 1e-6):
        super().__init__()
        self.norm1, self.gnconv = LayerNorm2d(dim), GnConv(dim, order)
        self.norm2 = LayerNorm2d(dim)
        self.ls1, self.ls2 = LayerScale2d(dim, ls_init), LayerScale2d(dim, ls_init)
        self.mlp = Mlp(dim, 4 * dim, act_layer=nn.GELU, use_conv=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.gnconv(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class HorNet(nn.Module):
    def __init__(self, num_classes: int = 100, base: int = 32, depths=(3, 3, 9, 3),
                 stem: str = "paper"):
        super().__init__()
        dims = [base * 2 ** i for i in range(4)]
        first = (nn.Conv2d(3, dims[0], 4, 4) if stem == "paper" else cifar_stem_conv(3, dims[0]))
        layers = [first, LayerNorm2d(dims[0])]
        for i, (dim, depth, order) in enumerate(zip(dims, depths, ORDERS)):
            if i:
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [HorBlock(dim, order) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x).mean((2, 3))))


@register_model(family="modern_conv", recipe="adamw", options={"stem": STEMS},
                paper_params=4_630_000, source="Rao et al. 2022 (HorNet); paper 002 Table 1")
def hornet_tiny(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    return HorNet(num_classes, stem=stem)
