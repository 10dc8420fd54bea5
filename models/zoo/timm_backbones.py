"""timm's ImageNet backbones the papers trained from scratch (paper 002 Table 1), built by
`timm.create_model(pretrained=False)` so their counts are timm's own at 100 classes.

`stem="paper"` is timm's network unchanged: 32x32 inputs reach 1x1 (2x2 for GhostNet)
before the head, as in the papers' runs. `stem="cifar"` makes the stem stride 1 (and drops
its max-pool), so the deepest stage sees 4x4 (GhostNet: 2x2) maps, what a CIFAR ResNet has.
"""
from __future__ import annotations

import timm
import torch.nn as nn

from models.layers import STEMS, cifar_stem_conv
from models.registry import register_model


def _unstride(conv: nn.Conv2d) -> None:
    conv.stride = (1, 1)


@register_model(family="modern_conv", recipe="adamw_convnext", options={"stem": STEMS},
                paper_params=27_900_000, source="Liu et al. 2022; paper 002 Table 1")
def convnext_tiny(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    model = timm.create_model("convnext_tiny", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        # a 3x3 conv rather than timm's patch_size=1, which would see a single pixel
        model.stem[0] = cifar_stem_conv(3, model.stem[0].out_channels)
    return model


@register_model(family="modern_conv", recipe="adamw", options={"stem": STEMS},
                paper_params=20_690_000, source="Wang et al. 2020 (CSPNet); paper 002 Table 1")
def cspresnet50(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    model = timm.create_model("cspresnet50", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        _unstride(model.stem.conv1.conv)
        model.stem.pool = nn.Identity()
    return model


@register_model(family="attention", recipe="adamw", options={"stem": STEMS},
                paper_params=25_640_000, source="Zhang et al. 2022 (ResNeSt); paper 002 Table 1")
def resnest50d(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    model = timm.create_model("resnest50d", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        _unstride(model.conv1[0])
        model.maxpool = nn.Identity()
    return model


@register_model(family="lightweight", recipe="sgd_ghostnet", options={"stem": STEMS},
                paper_params=4_030_000, source="Han et al. 2020 (GhostNet); paper 002 Table 1")
def ghostnet_100(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    model = timm.create_model("ghostnet_100", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        _unstride(model.conv_stem)
    return model
