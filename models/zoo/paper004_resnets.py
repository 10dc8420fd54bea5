"""Paper 004's ResNet-18-style CIFAR family: ResNet-18, Res2Net, ResNeXt, Coordinate
Attention (CA) on ResNet and Res2Net, and the paper's own Res2NetCA_v1b.

All share one skeleton, the usual CIFAR ResNet-18: a 3×3 stem of 64 channels (no
max-pool), four stages of two blocks at 64/128/256/512 channels, 1×1 conv + BN
projection shortcuts, global average pool, FC. The blocks are timm's; the Res2Net and
ResNeXt bottlenecks are used with expansion 1 so that every member keeps ResNet-18's
stage widths and differs from it only inside the block. The paper gives no parameter
counts for these, so none is checked against it.

CA (Hou et al. 2021, not in timm) sits where paper 004 §4.6 puts it: after each block's
last conv + BN, before the residual add. Its two paper 004 ablations are options:
`ca_pooling` (§5.4.3: avg+max, the paper's baseline, or avg plus an L1 / L2 pooling) and
`activation`, the gate (§5.4.2: the paper's baseline is CA's own sigmoid, as in Hou et al.).
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
from timm.models.res2net import Bottle2neck
from timm.models.resnet import BasicBlock, Bottleneck, downsample_avg, downsample_conv

from models.layers import ACTIVATIONS, conv_bn, make_activation
from models.registry import register_model

CA_POOLINGS = ("avg_max", "avg_l1", "avg_l2")
WIDTHS = (64, 128, 256, 512)
_SOURCE = "paper 004 §3.3–3.4, §4.6, §5"


def _directional_pool(x: torch.Tensor, dim: int, pooling: str) -> torch.Tensor:
    """Average plus a second pooling along `dim`. L1 / L2 are power means (mean |x|,
    root mean square) so both terms sit on the same scale as the average."""
    avg = x.mean(dim, keepdim=True)
    if pooling == "avg_max":
        return avg + x.amax(dim, keepdim=True)
    if pooling == "avg_l1":
        return avg + x.abs().mean(dim, keepdim=True)
    return avg + x.pow(2).mean(dim, keepdim=True).clamp_min(1e-12).sqrt()


class CoordAtt(nn.Module):
    """Coordinate Attention: pool along H and along W separately, mix both strips with a
    shared 1×1 conv, and gate the input with one per-row and one per-column weight."""

    def __init__(self, channels: int, reduction: int = 32, pooling: str = "avg_max",
                 gate: str = "sigmoid", **_):
        super().__init__()
        if pooling not in CA_POOLINGS:
            raise ValueError(f"ca_pooling {pooling!r} not in {CA_POOLINGS}")
        mid = max(8, channels // reduction)
        self.pooling = pooling
        self.mix = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid),
                                 nn.Hardswish())
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x_h = _directional_pool(x, 3, self.pooling)                       # N,C,H,1
        x_w = _directional_pool(x, 2, self.pooling).transpose(2, 3)       # N,C,W,1
        y_h, y_w = self.mix(torch.cat([x_h, x_w], dim=2)).split([h, w], dim=2)
        a_h = self.gate(self.conv_h(y_h))
        a_w = self.gate(self.conv_w(y_w.transpose(2, 3)))
        return x * a_h * a_w


class Res2NetBlock(Bottle2neck):
    """timm's Res2Net bottleneck, output at the stage width (expansion 1)."""
    expansion = 1


class ResNeXtBlock(Bottleneck):
    """timm's ResNeXt bottleneck, output at the stage width (expansion 1)."""
    expansion = 1


def _stem(deep: bool) -> nn.Sequential:
    if not deep:
        return nn.Sequential(conv_bn(3, 64, 3), nn.ReLU(inplace=True))
    # v1b: the ResNet-D deep stem at stride 1 (32×32 input), two convs more than ResNet-18.
    return nn.Sequential(conv_bn(3, 32, 3), nn.ReLU(inplace=True),
                         conv_bn(32, 32, 3), nn.ReLU(inplace=True),
                         conv_bn(32, 64, 3), nn.ReLU(inplace=True))


class CifarResNet18(nn.Module):
    """`block(inplanes, planes, stride, downsample, **block_args)` is a timm block class."""

    def __init__(self, block, num_classes: int = 100, deep_stem: bool = False,
                 avg_down: bool = False, **block_args):
        super().__init__()
        self.stem = _stem(deep_stem)
        project = downsample_avg if avg_down else downsample_conv
        layers, cin = [], 64
        for i, width in enumerate(WIDTHS):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                down = project(cin, width, 1, stride) if stride != 1 or cin != width else None
                layers.append(block(cin, width, stride, down, **block_args))
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


def _res2net_args(scale: int) -> dict:
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return {"block": Res2NetBlock, "base_width": 26, "scale": scale,
            "norm_layer": nn.BatchNorm2d}


def _ca(ca_pooling: str, activation: str):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} not in {ACTIVATIONS}")
    return {"attn_layer": functools.partial(CoordAtt, pooling=ca_pooling, gate=activation)}


_CA_OPTIONS = {"ca_pooling": CA_POOLINGS, "activation": ACTIVATIONS}
_SCALE = {"scale": int}


@register_model(family="baseline", recipe="sgd", source="He et al. 2016; " + _SOURCE)
def resnet18(num_classes: int = 100) -> nn.Module:
    return CifarResNet18(BasicBlock, num_classes)


# Paper 004 groups Res2Net and ResNeXt with ResNet as its baselines (§5.3), hence "baseline".
@register_model(family="baseline", recipe="sgd", options=_SCALE,
                source="Gao et al. 2019 (Res2Net); " + _SOURCE)
def res2net(num_classes: int = 100, scale: int = 4) -> nn.Module:
    return CifarResNet18(num_classes=num_classes, **_res2net_args(scale))


@register_model(family="baseline", recipe="sgd",
                source="Xie et al. 2017 (ResNeXt 32x4d); " + _SOURCE)
def resnext(num_classes: int = 100) -> nn.Module:
    return CifarResNet18(ResNeXtBlock, num_classes, cardinality=32, base_width=4)


@register_model(family="attention", recipe="sgd", options=_CA_OPTIONS,
                source="Hou et al. 2021 (Coordinate Attention); " + _SOURCE)
def resnet_ca(num_classes: int = 100, ca_pooling: str = "avg_max",
              activation: str = "sigmoid") -> nn.Module:
    return CifarResNet18(BasicBlock, num_classes, **_ca(ca_pooling, activation))


@register_model(family="attention", recipe="sgd", innovation=True,
                options={**_CA_OPTIONS, **_SCALE}, source=_SOURCE)
def res2net_ca(num_classes: int = 100, ca_pooling: str = "avg_max", activation: str = "sigmoid",
               scale: int = 4) -> nn.Module:
    return CifarResNet18(num_classes=num_classes, **_res2net_args(scale),
                         **_ca(ca_pooling, activation))


@register_model(family="attention", recipe="sgd", innovation=True,
                options={**_CA_OPTIONS, **_SCALE}, source="paper 004 Table 3 (Ours); " + _SOURCE)
def res2net_ca_v1b(num_classes: int = 100, ca_pooling: str = "avg_max",
                   activation: str = "sigmoid", scale: int = 4) -> nn.Module:
    return CifarResNet18(num_classes=num_classes, deep_stem=True, avg_down=True,
                         **_res2net_args(scale), **_ca(ca_pooling, activation))
