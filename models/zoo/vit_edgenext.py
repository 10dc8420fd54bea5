"""Paper 004's transformers: a small ViT for 32x32 and EdgeNeXt-S, from timm.

vit: ViT (Dosovitskiy et al. 2021) at DeiT-Ti widths (192 dim, 12 layers, 3 heads, MLP x4,
class token); paper 004 gives its patch size (4) but no widths. `stem="paper"`: 4x4 patches
(64 tokens); `stem="cifar"`: 2x2 patches (256 tokens).
edgenext: timm's edgenext_small (EdgeNeXt-S, Maaz et al. 2022), paper 004 §3.2.
`stem="paper"`: its 4x4 stride-4 patchify stem; `stem="cifar"`: a 3x3 stride-1 conv.
"""
from __future__ import annotations

import timm
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from models.layers import STEMS, cifar_stem_conv
from models.registry import register_model


@register_model(family="hybrid", recipe="adamw", options={"stem": STEMS},
                source="Dosovitskiy et al. 2021; paper 004 §3.1")
def vit(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    return VisionTransformer(img_size=32, patch_size=4 if stem == "paper" else 2,
                             num_classes=num_classes, embed_dim=192, depth=12, num_heads=3)


@register_model(family="hybrid", recipe="adamw", options={"stem": STEMS},
                source="Maaz et al. 2022 (EdgeNeXt); paper 004 §3.2")
def edgenext(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    model = timm.create_model("edgenext_small", pretrained=False, num_classes=num_classes)
    if stem == "cifar":
        model.stem[0] = cifar_stem_conv(3, model.stem[0].out_channels)
    return model
