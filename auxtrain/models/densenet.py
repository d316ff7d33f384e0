"""DenseNet-BC for CIFAR (Huang et al. 2017): densenet_bc_100 (growth rate 12, 0.8M parameters).

Depth 3*2n+4: a 3x3 stem with 2k channels, three dense blocks of n bottleneck layers
(BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, concatenated to the input), separated by
transitions (BN-ReLU-conv1x1 halving the channels, 2x2 average pooling), then BN-ReLU.
Stages: ``dense1``, ``dense2``, ``dense3`` (the dense blocks, before their transitions).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._base import Backbone, ClassifierHead, init_conv_bn_linear
from ._registry import register_model

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet"]


class DenseLayer(nn.Module):
    """Bottleneck layer: returns the input with ``growth_rate`` new channels appended."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4) -> None:
        super().__init__()
        inner = bn_size * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class DenseBlock(nn.Sequential):
    """``num_layers`` dense layers; output channels ``in_channels + num_layers * growth_rate``."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int) -> None:
        super().__init__(*(DenseLayer(in_channels + i * growth_rate, growth_rate) for i in range(num_layers)))


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 to ``out_channels``, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNet(Backbone):
    """CIFAR DenseNet-BC.

    Args:
        depth: 6n+4 (100 for DenseNet-BC-100, 250, 190).
        growth_rate: channels added per layer (k).
        compression: channel reduction of the transitions (0.5 for "-C").
        num_classes: classifier outputs.
        in_chans: input channels.
    """

    def __init__(
        self,
        depth: int = 100,
        growth_rate: int = 12,
        compression: float = 0.5,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 for DenseNet-BC (e.g. 100, 190, 250), got {depth}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        n = (depth - 4) // 6
        self.num_classes = num_classes
        channels = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_chans, channels, 3, padding=1, bias=False)
        stage_channels = []
        for i in range(3):
            setattr(self, f"dense{i + 1}", DenseBlock(n, channels, growth_rate))
            channels += n * growth_rate
            stage_channels.append(channels)
            if i < 2:
                out_channels = int(channels * compression)
                setattr(self, f"trans{i + 1}", Transition(channels, out_channels))
                channels = out_channels
        self.bn_final = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.num_features = channels
        self.stage_names = ("dense1", "dense2", "dense3")
        self.stage_channels = tuple(stage_channels)
        self.head = ClassifierHead(channels, num_classes)
        init_conv_bn_linear(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.trans2(self.dense2(x))
        return self.relu(self.bn_final(self.dense3(x)))


@register_model
def densenet_bc_100(num_classes: int = 10, **kwargs) -> DenseNet:
    """DenseNet-BC-100, growth rate 12, compression 0.5 (0.77M parameters at 10 classes, 0.80M at 100)."""
    return DenseNet(100, growth_rate=12, compression=0.5, num_classes=num_classes, **kwargs)
