"""improved_resnet20_convnext, paper 002 §7.2: ResNet-20's skeleton and CIFAR stem with
ConvNeXt's inverted bottleneck and large depthwise kernel, kept on BN + ReLU.

Block: 1×1 expand ×4 (BN, ReLU) → 7×7 depthwise, stride 2 when the block downsamples
(BN, ReLU) → 1×1 project (BN) → DropPath(0.05) → + shortcut → ReLU. The expansion is
of the block's input width, and shape-changing shortcuts are ResNet-20's 1×1 conv + BN;
that gives 174,868 parameters (paper: 0.175 M). The ablations read as follows, each
matching its paper's count:
- `conv="standard"`: a dense 3×3 conv in place of the depthwise 7×7 (1,887,892; paper
  1.888 M; a dense 7×7 would be 9.75 M).
- `inverted=False`: no expansion, and, as MobileNetV2 does at expand ratio 1, no expand
  conv either: depthwise 7×7 → 1×1 project (38,644; paper 0.039 M).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath

from models.layers import conv_bn
from models.registry import register_model
from models.zoo.resnet_cifar import CifarResNet

DROP_PATH = 0.05
CONVS = ("depthwise", "standard")


class ConvNeXtBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, droppath: bool = True,
                 conv: str = "depthwise", inverted: bool = True):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv {conv!r} not in {CONVS}")
        hidden = 4 * cin if inverted else cin
        expand = [conv_bn(cin, hidden, 1), nn.ReLU(inplace=True)] if inverted else []
        mid = (conv_bn(hidden, hidden, 7, stride, groups=hidden) if conv == "depthwise"
               else conv_bn(hidden, hidden, 3, stride))
        self.branch = nn.Sequential(*expand, mid, nn.ReLU(inplace=True),
                                    conv_bn(hidden, cout, 1))
        self.drop_path = DropPath(DROP_PATH) if droppath else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.shortcut = (conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.branch(x)) + self.shortcut(x))


@register_model(family="modern_conv", recipe="sgd", innovation=True,
                options={"droppath": bool, "conv": CONVS, "inverted": bool},
                paper_params=175_000, source="Liu et al. 2022 (ConvNeXt); paper 002 §7.2, §5")
def improved_resnet20_convnext(num_classes: int = 100, droppath: bool = True,
                               conv: str = "depthwise", inverted: bool = True) -> nn.Module:
    def block(cin, cout, stride):
        return ConvNeXtBasicBlock(cin, cout, stride, droppath, conv, inverted)
    return CifarResNet(3, num_classes, block=block)
