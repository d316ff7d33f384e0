"""He et al.'s (2016, section 4.2) CIFAR ResNets: resnet8/20/32/44/56/110 with 16-32-64 channels.

6n+2 layers: a 3x3 stem with 16 channels, then three stages of n basic blocks (16, 32, 64
channels at 32, 16, 8 px). Shortcuts follow the paper's option A by default: identity, and where
the shape changes, stride-2 subsampling with zero-padded extra channels (parameter-free; resnet20
has 0.27M parameters at 10 classes). ``shortcut="B"`` uses 1x1 convolution + BN projections there.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import Backbone, ClassifierHead
from ._registry import register_model
from .resnet import _init_weights

__all__ = ["CifarBasicBlock", "CifarResNet"]


class _PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions with an option-A or option-B shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_channels == planes:
            self.downsample = None
        elif shortcut == "A":
            self.downsample = _PadShortcut(in_channels, planes, stride)
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class CifarResNet(Backbone):
    """He et al.'s CIFAR ResNet of depth 6n+2, stages ``layer1``..``layer3``.

    Args:
        depth: 8, 20, 32, 44, 56, 110, ... (must be 6n+2).
        num_classes: classifier outputs.
        shortcut: ``"A"`` (zero-padding identity, the paper's CIFAR choice) or ``"B"`` (1x1 projections).
        in_chans: input channels.
        zero_init_residual: start every block's last BN weight at zero, so each block begins as
            its shortcut (Goyal et al., 2017; torchvision's option of the same name).
    """

    def __init__(self, depth: int, num_classes: int = 10, shortcut: str = "A", in_chans: int = 3,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        channels = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(CifarBasicBlock(channels, planes, stride, shortcut))
                channels = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = 64
        self.stage_names = ("layer1", "layer2", "layer3")
        self.stage_channels = (16, 32, 64)
        self.head = ClassifierHead(64, num_classes)
        _init_weights(self)
        if zero_init_residual:
            for block in self.modules():
                if isinstance(block, CifarBasicBlock):
                    nn.init.zeros_(block.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


@register_model
def resnet8(num_classes: int = 10, **kwargs) -> CifarResNet:
    """The 8-layer member of the family (one block per stage, 0.08M parameters; a common student in
    distillation work): about a third of resnet20's compute."""
    return CifarResNet(8, num_classes=num_classes, **kwargs)


@register_model
def resnet20(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al.'s CIFAR ResNet-20 (0.27M parameters, option-A shortcuts)."""
    return CifarResNet(20, num_classes=num_classes, **kwargs)


@register_model
def resnet32(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al.'s CIFAR ResNet-32 (0.46M parameters)."""
    return CifarResNet(32, num_classes=num_classes, **kwargs)


@register_model
def resnet44(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al.'s CIFAR ResNet-44 (0.66M parameters)."""
    return CifarResNet(44, num_classes=num_classes, **kwargs)


@register_model
def resnet56(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al.'s CIFAR ResNet-56 (0.85M parameters)."""
    return CifarResNet(56, num_classes=num_classes, **kwargs)


@register_model
def resnet110(num_classes: int = 10, **kwargs) -> CifarResNet:
    """He et al.'s CIFAR ResNet-110 (1.7M parameters)."""
    return CifarResNet(110, num_classes=num_classes, **kwargs)
