"""The interface every auxtrain backbone shares (timm-style), and the classifier head module.

A backbone is ``forward_features`` (the unpooled feature map) followed by ``self.head``, a
:class:`ClassifierHead` (global pooling, optional hidden layers, final ``nn.Linear``). Keeping the
whole head in one submodule is what lets :class:`auxtrain.AuxiliaryModel` deep-copy it for the
auxiliary branches and tie its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn as nn

__all__ = ["ClassifierHead", "Backbone"]


class ClassifierHead(nn.Module):
    """Global average pooling, optional layers on the pooled map, flatten, optional hidden layers, linear.

    Args:
        in_features: channels of the feature map (and of the pooled vector).
        num_classes: outputs of the final linear layer.
        pre_flatten: layers applied to the pooled ``N x C x 1 x 1`` map (e.g. ConvNeXt's LayerNorm2d).
        hidden: layers between flattening and the final linear layer (e.g. MobileNetV3's MLP, dropout).
        fc: use this final linear layer instead of a new ``nn.Linear(fc_in_features, num_classes)``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        pre_flatten: Sequence[nn.Module] = (),
        hidden: Sequence[nn.Module] = (),
        fc: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.pre_flatten = nn.Sequential(*pre_flatten) if pre_flatten else nn.Identity()
        self.flatten = nn.Flatten(1)
        self.hidden = nn.Sequential(*hidden) if hidden else nn.Identity()
        self.fc = fc if fc is not None else nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.flatten(self.pre_flatten(self.global_pool(x))))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Linear:
        return self.fc


def init_conv_bn_linear(model: nn.Module) -> None:
    """He (fan-out) init for convolutions, BN weight 1 / bias 0, zero linear biases (CIFAR nets)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _store_output(store: dict[str, torch.Tensor], name: str, module, inputs, output) -> None:
    store[name] = output


class Backbone(nn.Module):
    """Base class giving the timm-style interface; subclasses define ``forward_features`` and ``head``.

    Subclasses also set ``num_classes``, ``num_features`` (channels of the unpooled map),
    ``stage_names`` (attribute paths of the stages deep supervision can attach to) and
    ``stage_channels`` (their output channels, same order).
    """

    head: ClassifierHead
    num_classes: int
    num_features: int
    stage_names: tuple[str, ...] = ()
    stage_channels: tuple[int, ...] = ()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the unpooled map ``x`` and classify it (or stop before the final linear layer)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        """The final linear layer."""
        return self.head.fc

    def forward_stages(
        self, x: torch.Tensor, stages: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run ``forward_features`` and also return the outputs of the named ``stages``.

        Uses temporary forward hooks, so it works for any submodule path (``model.get_submodule``);
        nothing stays registered after the call.
        """
        outputs: dict[str, torch.Tensor] = {}
        handles = []
        try:
            for name in stages:
                module = self.get_stage(name)
                handles.append(module.register_forward_hook(partial(_store_output, outputs, name)))
            features = self.forward_features(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in stages if name not in outputs]
        if missing:
            raise ValueError(f"stages {missing} were not run by forward_features; use names from stage_names")
        return features, outputs

    def get_stage(self, name: str) -> nn.Module:
        """The submodule at attribute path ``name``; ``ValueError`` listing ``stage_names`` if absent."""
        try:
            return self.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"stage {name!r} not found in {type(self).__name__}; valid stage names: {self.stage_names}"
            ) from None
