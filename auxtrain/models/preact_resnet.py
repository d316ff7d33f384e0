"""Pre-activation ResNet-18/34 for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Blocks apply BN-ReLU before each convolution; the projection shortcut (1x1 conv, no BN) takes
the pre-activated input. As in the paper, a final BN-ReLU follows the last stage, so
``forward_features`` returns an activated map. 3x3 stride-1 stem, no max-pool, widths 64-512.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._base import Backbone, ClassifierHead
from ._registry import register_model
from .resnet import _init_weights

__all__ = ["PreActBlock", "PreActResNet"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the (projected) input."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(Backbone):
    """CIFAR pre-activation ResNet with stages ``layer1``..``layer4`` and a final BN-ReLU."""

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 64, 3, padding=1, bias=False)
        channels = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(depth):
                blocks.append(PreActBlock(channels, planes, stride=2 if (i > 0 and j == 0) else 1))
                channels = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.num_features = channels
        self.stage_names = ("layer1", "layer2", "layer3", "layer4")
        self.stage_channels = (64, 128, 256, 512)
        self.head = ClassifierHead(channels, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.relu(self.bn_final(x))


@register_model
def preactresnet18(num_classes: int = 10, **kwargs) -> PreActResNet:
    """CIFAR pre-activation ResNet-18."""
    return PreActResNet((2, 2, 2, 2), num_classes=num_classes, **kwargs)


@register_model
def preactresnet34(num_classes: int = 10, **kwargs) -> PreActResNet:
    """CIFAR pre-activation ResNet-34."""
    return PreActResNet((3, 4, 6, 3), num_classes=num_classes, **kwargs)
