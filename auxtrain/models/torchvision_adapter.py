"""``tv_<name>`` adapters: torchvision classification CNNs with auxtrain's (timm-style) interface.

Each adapter takes a torchvision model built with ``weights=None`` (nothing is downloaded) and
re-parents its modules into ``features`` (an ``nn.Sequential`` up to the unpooled map) and a
:class:`ClassifierHead` (pooling, the model's own layers before its final linear, the final linear).
The computation is the same as torchvision's ``forward``; only the module layout changes.
Supported families: ResNet/ResNeXt/Wide ResNet, RegNet, ShuffleNetV2, MNASNet, MobileNetV2/V3,
EfficientNet (V1/V2), DenseNet and ConvNeXt. Stages (for deep supervision) are the last feature
module at each resolution from stride 4 on, found by one dry run at 64 px when the model is built.
The ``tv_*`` names are registered lazily (on the registry's first use), and torchvision is only
imported then, so importing :mod:`auxtrain.models` stays cheap.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ._base import Backbone, ClassifierHead
from ._registry import register_lazily, register_model

__all__ = ["TorchvisionAdapter", "SUPPORTED_FAMILIES"]

SUPPORTED_FAMILIES = (
    "resnet", "resnext", "wide_resnet", "regnet_", "shufflenet_v2", "mnasnet",
    "mobilenet_v2", "mobilenet_v3", "efficientnet", "densenet", "convnext",
)  # fmt: skip


def _split_torchvision(model: nn.Module) -> tuple[OrderedDict, list[nn.Module]]:
    """Return (feature modules in order, classifier modules ending in the final linear)."""
    import torchvision

    children = dict(model.named_children())
    if "layer4" in children and "fc" in children:  # ResNet family
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return OrderedDict((n, children[n]) for n in names), [model.fc]
    if "trunk_output" in children:  # RegNet: flatten the trunk so its blocks are stages
        features = OrderedDict(stem=model.stem)
        features.update(model.trunk_output.named_children())
        return features, [model.fc]
    if "stage2" in children:  # ShuffleNetV2
        names = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
        return OrderedDict((n, children[n]) for n in names), [model.fc]
    if "layers" in children:  # MNASNet
        return OrderedDict(model.layers.named_children()), list(model.classifier)
    if "features" in children:  # MobileNet, EfficientNet, DenseNet, ConvNeXt
        features = OrderedDict(model.features.named_children())
        if isinstance(model, torchvision.models.DenseNet):  # its forward applies a ReLU after features
            features["final_relu"] = nn.ReLU(inplace=False)
        classifier = model.classifier
        return features, list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]
    raise ValueError(f"unsupported torchvision model {type(model).__name__}; supported: {SUPPORTED_FAMILIES}")


class TorchvisionAdapter(Backbone):
    """A torchvision classification model as ``features`` + :class:`ClassifierHead`.

    Args:
        model: a torchvision CNN classifier from a supported family (its modules are reused, not copied).
        probe_size: input size of the dry run that finds the stages and their channels.
    """

    def __init__(self, model: nn.Module, probe_size: int = 64) -> None:
        super().__init__()
        features, classifier = _split_torchvision(model)
        fc = classifier[-1]
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"the classifier of {type(model).__name__} does not end in nn.Linear")
        before = classifier[:-1]
        flat = [i for i, m in enumerate(before) if isinstance(m, nn.Flatten)]
        pre_flatten, hidden = (before[: flat[0]], before[flat[0] + 1 :]) if flat else ([], before)
        self.features = nn.Sequential(features)
        self.num_classes = fc.out_features
        self.stage_names, self.stage_channels, self.num_features = self._probe(probe_size)
        self.head = ClassifierHead(
            self.num_features, self.num_classes, pre_flatten=pre_flatten, hidden=hidden, fc=fc
        )
        # The modules made here take the wrapped model's mode; the reused ones keep their own, so an
        # eval-mode model stays in eval mode (its BatchNorm layers keep using running statistics).
        reused = {id(m) for m in model.modules()}
        for module in self.modules():
            if id(module) not in reused:
                module.training = model.training

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[tuple[str, ...], tuple[int, ...], int]:
        modes = [(m, m.training) for m in self.features.modules()]
        self.features.eval()  # no batch statistics are recorded by the dry run
        x = torch.zeros(1, 3, size, size)
        last_at_stride: dict[int, tuple[str, int]] = {}
        for name, module in self.features.named_children():
            x = module(x)
            stride = size // x.shape[-1]
            last_at_stride[stride] = (f"features.{name}", x.shape[1])
        for module, mode in modes:
            module.training = mode
        stages = [last_at_stride[s] for s in sorted(last_at_stride) if s >= 4]
        return tuple(n for n, _ in stages), tuple(c for _, c in stages), x.shape[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _make_builder(tv_name: str):
    def builder(num_classes: int = 1000, **kwargs) -> TorchvisionAdapter:
        for key in ("weights", "pretrained"):
            if kwargs.pop(key, None):
                raise ValueError(
                    f"{key}= is not supported by tv_{tv_name}: auxtrain never downloads weights; load a "
                    "state_dict yourself after create_model"
                )
        import torchvision

        model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        return TorchvisionAdapter(model)

    builder.__name__ = f"tv_{tv_name}"
    builder.__doc__ = f"torchvision ``{tv_name}`` (random init, ImageNet resolution), auxtrain interface."
    return builder


def _register_all() -> None:
    import torchvision

    for tv_name in torchvision.models.list_models(module=torchvision.models):
        if tv_name.startswith(SUPPORTED_FAMILIES):
            register_model(_make_builder(tv_name))


register_lazily(_register_all)
