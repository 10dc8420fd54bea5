"""MLP-Mixer (Tolstikhin et al. 2021) on timm's `MlpMixer`, adapted to 32x32 inputs.

mlp_mixer_b16: B/16 widths (768 hidden, token MLP 384, channel MLP 3072, 12 layers).
- `stem="paper"`: the paper's 59.19 M is timm's mixer_b16_224 at 100 classes, whose token MLPs
  are sized for 196 tokens (14x14 patches of 16x16). The same network on 32x32: 16x16
  patch kernels at stride 2 with padding 5 give a 14x14 grid of (overlapping) patches,
  so every layer keeps its shape and the count is exactly 59,188,372. Plain 16x16 patches
  on 32x32 would leave 4 tokens (57.42 M).
- `stem="cifar"`: the usual CIFAR patching, 4x4 patches without overlap, 8x8 = 64 tokens
  (57,417,316). Fewer tokens than the "paper" stem, but 4x finer patches than 16x16 ones
  and a third of its compute; 2x2 patches (256 tokens) would cost 33 GFLOPs an image.
mlp_mixer_tiny: the paper's "smaller hidden sizes, fewer layers" read as ViT-Ti's widths
(192 hidden, token MLP 96, channel MLP 768, 12 layers); `stem="paper"`: 8x8 patches (16
tokens, 3,654,628; paper 3.64 M), `stem="cifar"`: 4x4 patches (64 tokens, 3,738,148).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.mlp_mixer import MlpMixer

from models.layers import STEMS
from models.registry import register_model


class ConvTokens(nn.Module):
    """Patch embedding whose patches may overlap (stride < kernel), as tokens (B, N, C)."""

    def __init__(self, dim: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _mixer(num_classes: int, dim: int, patch: int, img_size: int = 32) -> MlpMixer:
    return MlpMixer(num_classes=num_classes, img_size=img_size, patch_size=patch,
                    num_blocks=12, embed_dim=dim, mlp_ratio=(0.5, 4.0))


@register_model(family="mlp", recipe="adamw_mixer", options={"stem": STEMS},
                paper_params=59_190_000, source="Tolstikhin et al. 2021; paper 002 Table 1")
def mlp_mixer_b16(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    if stem == "cifar":
        return _mixer(num_classes, 768, 4)
    model = _mixer(num_classes, 768, 16, img_size=224)  # sized for 196 tokens
    model.stem = ConvTokens(768, 16, 2, 5)  # (32 + 2*5 - 16) / 2 + 1 = 14 patches a side
    return model


@register_model(family="mlp", recipe="adamw_mixer", options={"stem": STEMS},
                paper_params=3_640_000, source="Tolstikhin et al. 2021; paper 002 Table 1")
def mlp_mixer_tiny(num_classes: int = 100, stem: str = "paper") -> nn.Module:
    return _mixer(num_classes, 192, 8 if stem == "paper" else 4)
