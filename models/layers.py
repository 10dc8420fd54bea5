"""Layers shared by several zoo modules. timm's layers are used wherever timm has the piece."""
from __future__ import annotations

import torch.nn as nn

ACTIVATIONS = ("relu", "elu", "gelu", "sigmoid")


def make_activation(name: str = "relu") -> nn.Module:
    """The activations seed 004 ablates, by name."""
    table = {"relu": lambda: nn.ReLU(inplace=True), "elu": lambda: nn.ELU(inplace=True),
             "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
    if name not in table:
        raise ValueError(f"activation {name!r} not in {ACTIVATIONS}")
    return table[name]()


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))
