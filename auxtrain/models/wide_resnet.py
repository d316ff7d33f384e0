"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016): WRN-40-2 (the AugMix standard), WRN-28-10.

Depth 6n+4: a 3x3 stem with 16 channels, three stages of n pre-activation blocks with widths
16k, 32k, 64k (strides 1, 2, 2), then BN-ReLU. Where a block changes the shape, its shortcut is
a 1x1 convolution of the pre-activated input. WRN-40-2 has 2.24M parameters (10 classes).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._base import Backbone, ClassifierHead, init_conv_bn_linear
from ._registry import register_model

__all__ = ["WideBlock", "WideResNet"]


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3, (dropout), BN-ReLU-conv3x3, plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.dropout(self.relu(self.bn2(self.conv1(out))))
        return self.conv2(out) + shortcut


class WideResNet(Backbone):
    """WRN-depth-widen_factor with stages ``layer1``..``layer3``.

    Args:
        depth: 6n+4 (16, 22, 28, 40, ...).
        widen_factor: width multiplier k.
        num_classes: classifier outputs.
        drop_rate: dropout between the two convolutions of each block (0 as in AugMix).
        in_chans: input channels.
    """

    def __init__(
        self, depth: int, widen_factor: int, num_classes: int = 10, drop_rate: float = 0.0, in_chans: int = 3
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        channels = 16
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(WideBlock(channels, width, stride=stride, drop_rate=drop_rate))
                channels = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.num_features = channels
        self.stage_names = ("layer1", "layer2", "layer3")
        self.stage_channels = widths
        self.head = ClassifierHead(channels, num_classes)
        init_conv_bn_linear(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.relu(self.bn_final(x))


@register_model
def wrn40_2(num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-40-2 (2.2M parameters), the AugMix CIFAR baseline."""
    return WideResNet(40, 2, num_classes=num_classes, **kwargs)


@register_model
def wrn28_10(num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-28-10 (36.5M parameters)."""
    return WideResNet(28, 10, num_classes=num_classes, **kwargs)
