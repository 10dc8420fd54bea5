"""CIFAR ResNet (He et al. 2016, §4.2): 3×3 stem of 16 channels, three stages of
16/32/64 channels with n BasicBlocks each (depth = 6n + 2), global average pool, FC.

Shortcuts that change shape are 1×1 conv + BN projections (option B); with them
`resnet_20` has exactly 278,324 parameters at 100 classes, the papers' count.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.layers import conv_bn
from models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = (conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act(self.conv1(x)))
        return self.act(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The 3-stage CIFAR skeleton; `block` builds one residual block (cin, cout, stride)."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 100, block=BasicBlock,
                 widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, widths[0], 3, 1), nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                layers.append(block(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model(family="baseline", recipe="sgd", paper_params=278_324, params_tolerance=0.0,
                source="He et al. 2016; paper 002 Table 1")
def resnet_20(num_classes: int = 100) -> nn.Module:
    return CifarResNet(3, num_classes)


@register_model(family="baseline", recipe="sgd", paper_params=470_000,
                source="He et al. 2016; paper 002 Table 1")
def resnet_32(num_classes: int = 100) -> nn.Module:
    return CifarResNet(5, num_classes)


@register_model(family="baseline", recipe="sgd", paper_params=860_000,
                source="He et al. 2016; paper 002 Table 1")
def resnet_56(num_classes: int = 100) -> nn.Module:
    return CifarResNet(9, num_classes)
