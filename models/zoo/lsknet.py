"""LSKNet (Li et al. 2023) as a classifier; the papers only discussed it, here it is real.
The large selective kernel block is written here (timm has none); the stages are the
VAN-style skeleton of models/zoo/segnext.py, at LSKNet-T's configuration (widths 32, 64,
160, 256; depths 3, 3, 5, 2; FFN ratios 8, 8, 4, 4; 7x7 stride-4 stem).

LSK: a 5x5 depthwise conv, then a 7x7 depthwise conv with dilation 3 on its output (a
23x23 receptive field); each is reduced to C/2 channels by a 1x1 conv; the channel-wise
mean and max of the two stacked maps go through a 7x7 conv to two sigmoid maps that select,
per pixel, how much of each kernel to keep; a 1x1 conv back to C multiplies the input.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.layers import STEMS, cifar_stem_conv
from models.registry import register_model
from models.zoo.segnext import VanNet, dw_conv


class LSKBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_small = dw_conv(dim, 5, 5)
        self.conv_large = dw_conv(dim, 7, 7, dilation=3)
        self.reduce_small = nn.Conv2d(dim, dim // 2, 1)
        self.reduce_large = nn.Conv2d(dim, dim // 2, 1)
        self.squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.expand = nn.Conv2d(dim // 2, dim, 1)

    def selection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two reduced kernel branches and the 2-channel spatial selection map."""
        small = self.conv_small(x)
        large = self.conv_large(small)
        small, large = self.reduce_small(small), self.reduce_large(large)
        both = torch.cat([small, large], dim=1)
        pooled = torch.cat([both.mean(1, keepdim=True), both.amax(1, keepdim=True)], dim=1)
        return small, large, self.squeeze(pooled).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small, large, select = self.selection(x)
        return x * self.expand(small * select[:, :1] + large * select[:, 1:])


@register_model(family="attention", recipe="adamw", options={"stem": STEMS},
                source="Li et al. 2023 (LSKNet); paper 002 §2 (conceptual only)")
def lsknet_tiny(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    dims = (32, 64, 160, 256)
    first = nn.Conv2d(3, dims[0], 7, 4, 3) if stem == "paper" else cifar_stem_conv(3, dims[0])
    return VanNet(nn.Sequential(first, nn.BatchNorm2d(dims[0])), dims, (3, 3, 5, 2),
                  (8, 8, 4, 4), LSKBlock, num_classes)
