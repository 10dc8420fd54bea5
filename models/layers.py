"""Layers shared by several zoo modules. timm's layers are used wherever timm has the piece."""
from __future__ import annotations

import torch.nn as nn

ACTIVATIONS = ("relu", "elu", "gelu", "sigmoid")


def make_activation(name: str = "relu") -> nn.Module:
    """The activations paper 004 ablates, by name."""
    table = {"relu": lambda: nn.ReLU(inplace=True), "elu": lambda: nn.ELU(inplace=True),
             "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
    if name not in table:
        raise ValueError(f"activation {name!r} not in {ACTIVATIONS}")
    return table[name]()


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


# "paper": the downsampling the papers' models used (timm's and the original architectures'
# defaults, comparable with the papers' tables); "cifar": a stride-1 stem that keeps the
# resolution a 32x32 image lacks.
STEMS = ("paper", "cifar")


def cifar_stem_conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Conv2d:
    """The stride-1 conv that replaces a patchify or strided stem conv in the "cifar" stem."""
    return nn.Conv2d(cin, cout, k, 1, k // 2, bias=bias)
