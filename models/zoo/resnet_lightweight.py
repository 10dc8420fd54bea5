"""Ghost-ResNets (paper 002 §3.2, §5.2): the CIFAR ResNet with every 3×3 conv of its
BasicBlocks replaced by a Ghost module (Han et al. 2020).

The Ghost module is timm's: a primary conv to ceil(out/ratio) "intrinsic" channels and a
3×3 depthwise "cheap" op for the rest, each with its BN, concatenated and sliced to `out`.
It takes the conv's place inside the block's conv+BN, so the block keeps its own BN.
Of the readings tried (cheap-op kernel 1/3/5, BN inside and/or outside, ghosted stem or
shortcuts), this one, with the stem and the 1×1 projection shortcuts left as they are,
is the only one that reproduces all three of paper 003's ResNet-20 counts:
149,060 / 108,980 / 83,756 for ratio 2/3/4 against 0.149 / 0.109 / 0.084 M.
As in GhostNet's bottleneck, the module that feeds the residual add has no ReLU.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.ghostnet import GhostModule

from models.layers import conv_bn
from models.registry import register_model
from models.zoo.resnet_cifar import CifarResNet

_OPTIONS = {"ratio": (2, 3, 4)}
_SOURCE = "Han et al. 2020 (GhostNet); paper 002 §5.2, paper 003 Ghost ablation table"


def ghost_bn(cin: int, cout: int, stride: int, ratio: int, relu: bool) -> nn.Sequential:
    act = nn.ReLU if relu else nn.Identity
    return nn.Sequential(GhostModule(cin, cout, 3, ratio, dw_size=3, stride=stride,
                                     act_layer=act), nn.BatchNorm2d(cout))


class GhostBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, ratio: int = 2):
        super().__init__()
        self.conv1 = ghost_bn(cin, cout, stride, ratio, relu=True)
        self.conv2 = ghost_bn(cout, cout, 1, ratio, relu=False)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = (conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act(self.conv1(x)))
        return self.act(out + self.shortcut(x))


def ghost_resnet(blocks_per_stage: int, num_classes: int, ratio: int) -> CifarResNet:
    if ratio not in _OPTIONS["ratio"]:
        raise ValueError(f"ratio {ratio!r} not in {_OPTIONS['ratio']}")

    def block(cin, cout, stride):
        return GhostBasicBlock(cin, cout, stride, ratio)
    return CifarResNet(blocks_per_stage, num_classes, block=block)


@register_model(family="lightweight", recipe="sgd", options=_OPTIONS, paper_params=149_000,
                source=_SOURCE)
def ghost_resnet_20(num_classes: int = 100, ratio: int = 2) -> nn.Module:
    return ghost_resnet(3, num_classes, ratio)


# 249,636 parameters against the paper's 0.24 M (+4.0%): the design that matches all three
# ghost_resnet_20 counts cannot reach it; models/README.md has the details.
@register_model(family="lightweight", recipe="sgd", options=_OPTIONS, paper_params=240_000,
                params_tolerance=None, source=_SOURCE)
def ghost_resnet_32(num_classes: int = 100, ratio: int = 2) -> nn.Module:
    return ghost_resnet(5, num_classes, ratio)
