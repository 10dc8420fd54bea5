"""CoAtNet-0 and paper 001's CoAtNet-CIFAROpt, on timm's MaxxVit (`model_cfgs["coatnet_0"]`:
C-C-T-T, MBConv with SE in S1-S2, relative-position-bias transformer blocks in S3-S4).

CoAtNet-CIFAROpt (paper 001 §III.C table, paper 002 §7.1), from CoAtNet-1 (2/6/14/2 blocks,
96/192/384/768 channels): ECA in place of SE in every MBConv, ECA between the two layers
of every transformer FFN, S3 cut to 10 blocks and S4 to 512 channels, and a stride-1
("cifar") S0 so that 32x32 images are not halved before S1; the large-stem variant has a
5x5 first stem conv ("one conv layer with a larger kernel", paper 001 §III.C).
`channel_attention`, `ffn_eca` and `s3_depth` are paper 001 §V.C's ablations.
"""
from __future__ import annotations

from dataclasses import replace

import torch.nn as nn
from timm.layers import EcaModule, create_conv2d
from timm.models import maxxvit

from models.layers import STEMS
from models.registry import register_model

CHANNEL_ATTENTION = ("eca", "se", "none")
_TIMM_ATTN = {"eca": "eca", "se": "se", "none": ""}


def build_coatnet(num_classes: int, depths: tuple, dims: tuple, stem: str = "paper",
                  stem_kernel: int = 3, channel_attention: str = "se",
                  ffn_eca: bool = False) -> maxxvit.MaxxVit:
    base = maxxvit.model_cfgs["coatnet_0"]
    cfg = replace(base, depths=depths, embed_dim=dims,
                  conv_cfg=replace(base.conv_cfg, attn_layer=_TIMM_ATTN[channel_attention]))
    stride = 2 if stem == "paper" else 1
    # timm sizes the relative-position tables from img_size over its stride-2 stem: a
    # stride-1 stem on 32x32 has the feature maps of the stride-2 stem on 64x64
    model = maxxvit.MaxxVit(cfg, img_size=64 // stride, num_classes=num_classes)
    if stride == 1 or stem_kernel != 3:
        model.stem.conv1 = create_conv2d(3, model.stem.conv1.out_channels, stem_kernel,
                                         stride=stride, bias=cfg.stem_bias)
        model.stem.stride = stride
    if ffn_eca:
        for block in model.modules():
            if isinstance(block, maxxvit.TransformerBlock2d):
                block.mlp.act = nn.Sequential(block.mlp.act, EcaModule(block.mlp.fc1.out_channels))
    return model


@register_model(family="hybrid", recipe="adamw", options={"stem": STEMS},
                paper_params=20_040_000, params_tolerance=None,
                source="Dai et al. 2021 (CoAtNet); paper 002 Table 1")
def coatnet_0(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    return build_coatnet(num_classes, (2, 3, 5, 2), (96, 192, 384, 768), stem)


_OPT_OPTIONS = {"stem": STEMS, "channel_attention": CHANNEL_ATTENTION, "ffn_eca": bool,
                "s3_depth": int}


def _cifar_opt(num_classes, stem, stem_kernel, channel_attention, ffn_eca, s3_depth):
    if s3_depth < 1:
        raise ValueError(f"s3_depth must be >= 1, got {s3_depth}")
    return build_coatnet(num_classes, (2, 6, s3_depth, 2), (96, 192, 384, 512), stem,
                         stem_kernel, channel_attention, ffn_eca)


@register_model(family="hybrid", recipe="adamw", innovation=True, options=_OPT_OPTIONS,
                paper_params=27_010_000, params_tolerance=None,
                source="paper 001 §III.C; paper 002 §7.1, Table 1")
def coatnet_cifar_opt(num_classes: int = 100, stem: str = "cifar",
                      channel_attention: str = "eca", ffn_eca: bool = True,
                      s3_depth: int = 10) -> nn.Module:
    return _cifar_opt(num_classes, stem, 3, channel_attention, ffn_eca, s3_depth)


@register_model(family="hybrid", recipe="adamw", innovation=True, options=_OPT_OPTIONS,
                paper_params=27_010_000, params_tolerance=None,
                source="paper 001 §III.B-C; paper 002 §7.1, Table 1")
def coatnet_cifar_opt_large_stem(num_classes: int = 100, stem: str = "cifar",
                                 channel_attention: str = "eca", ffn_eca: bool = True,
                                 s3_depth: int = 10) -> nn.Module:
    return _cifar_opt(num_classes, stem, 5, channel_attention, ffn_eca, s3_depth)
