"""``tv_<name>`` adapters: torchvision classification CNNs with auxtrain's (timm-style) interface.

Each adapter takes a torchvision model and adopts its top-level modules under their own names, so
its state_dict has exactly torchvision's keys: a torchvision checkpoint loads into a ``tv_*`` model
and its exported weights load back into ``torchvision.models.get_model(name)``. It adds
``forward_features`` (the modules up to the unpooled map, run in torchvision's order) and
``forward_head`` (global average pooling, then the model's own classifier), which compute what
torchvision's ``forward`` does. Supported families: ResNet/ResNeXt/Wide ResNet, RegNet,
ShuffleNetV2, MNASNet, MobileNetV2/V3, EfficientNet (V1/V2), DenseNet and ConvNeXt. Stages (for
deep supervision) are the last feature module at each resolution from stride 4 on, found by one
dry run at 64 px when the model is built. The ``tv_*`` names are registered lazily (on the
registry's first use), and torchvision is only imported then, so importing :mod:`auxtrain.models`
stays cheap. Weights exported by earlier auxtrain versions (keys ``features.*`` / ``head.*``) still
load: they are renamed on the way in.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._base import Backbone
from ._registry import register_lazily, register_model

__all__ = ["TorchvisionAdapter", "SUPPORTED_FAMILIES"]

SUPPORTED_FAMILIES = (
    "resnet", "resnext", "wide_resnet", "regnet_", "shufflenet_v2", "mnasnet",
    "mobilenet_v2", "mobilenet_v3", "efficientnet", "densenet", "convnext",
)  # fmt: skip


def _layout(model: nn.Module) -> tuple[list[str], str, bool]:
    """(feature steps as module paths in run order, name of the classifier, ReLU after the features)."""
    import torchvision

    children = dict(model.named_children())

    def under(name: str) -> list[str]:
        return [f"{name}.{child}" for child in children[name]._modules]

    if "layer4" in children and "fc" in children:  # ResNet family
        return ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"], "fc", False
    if "trunk_output" in children:  # RegNet: the trunk's blocks are the stages
        return ["stem", *under("trunk_output")], "fc", False
    if "stage2" in children:  # ShuffleNetV2
        return ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"], "fc", False
    if "layers" in children:  # MNASNet
        return under("layers"), "classifier", False
    if "features" in children:  # MobileNet, EfficientNet, DenseNet (a ReLU after its features), ConvNeXt
        return under("features"), "classifier", isinstance(model, torchvision.models.DenseNet)
    raise ValueError(f"unsupported torchvision model {type(model).__name__}; supported: {SUPPORTED_FAMILIES}")


class TorchvisionAdapter(Backbone):
    """A torchvision classification model with ``forward_features`` / ``forward_head``; same state_dict keys.

    Args:
        model: a torchvision CNN classifier from a supported family (its modules are adopted, not
            copied; its train/eval mode is kept).
        probe_size: input size of the dry run that finds the stages and their channels.
    """

    def __init__(self, model: nn.Module, probe_size: int = 64) -> None:
        super().__init__()
        steps, classifier, final_relu = _layout(model)
        for name, child in model.named_children():
            self.add_module(name, child)
        self._roots = tuple(dict.fromkeys(step.split(".")[0] for step in steps))  # run in this order
        self._classifier, self._final_relu = classifier, final_relu
        fc = self._classifier_layers()[-1]
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"the classifier of {type(model).__name__} does not end in nn.Linear")
        self.num_classes = fc.out_features
        self.training = model.training  # the adopted modules keep their own modes
        self.stage_names, self.stage_channels, self.num_features = self._probe(steps, probe_size)
        self._legacy = self._legacy_prefixes(steps)
        self._register_load_state_dict_pre_hook(self._rename_legacy_keys)

    def _classifier_layers(self) -> list[nn.Module]:
        classifier = getattr(self, self._classifier)
        return list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]

    @torch.no_grad()
    def _probe(self, steps: list[str], size: int) -> tuple[tuple[str, ...], tuple[int, ...], int]:
        modes = [(m, m.training) for m in self.modules()]
        self.eval()  # no batch statistics are recorded by the dry run
        x = torch.zeros(1, 3, size, size)
        last_at_stride: dict[int, tuple[str, int]] = {}
        for step in steps:
            x = self.get_submodule(step)(x)
            last_at_stride[size // x.shape[-1]] = (step, x.shape[1])
        for module, mode in modes:
            module.training = mode
        stages = [last_at_stride[s] for s in sorted(last_at_stride) if s >= 4]
        return tuple(n for n, _ in stages), tuple(c for _, c in stages), x.shape[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._roots:
            x = getattr(self, name)(x)
        return F.relu(x) if self._final_relu else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling and the model's own classifier (or its input, ``pre_logits``)."""
        layers = self._classifier_layers()
        x = F.adaptive_avg_pool2d(x, 1)
        if not any(isinstance(layer, nn.Flatten) for layer in layers):
            x = torch.flatten(x, 1)
        for layer in layers[:-1]:
            x = layer(x)
        return x if pre_logits else layers[-1](x)

    def get_classifier(self) -> nn.Linear:
        return self._classifier_layers()[-1]

    def _legacy_prefixes(self, steps: list[str]) -> dict[str, str]:
        """Old key prefix -> new one, for weights saved with the former ``features`` + ``head`` layout."""
        renames = {f"features.{step.split('.')[-1]}.": f"{step}." for step in steps}
        layers = self._classifier_layers()
        flat = [i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)]
        single = not isinstance(getattr(self, self._classifier), nn.Sequential)
        for i, _ in enumerate(layers):
            new = f"{self._classifier}." if single else f"{self._classifier}.{i}."
            if i == len(layers) - 1:
                renames["head.fc."] = new
            elif flat and i < flat[0]:
                renames[f"head.pre_flatten.{i}."] = new
            elif not flat or i > flat[0]:
                renames[f"head.hidden.{i - (flat[0] + 1 if flat else 0)}."] = new
        return renames

    def _rename_legacy_keys(self, state_dict, prefix, *args) -> None:
        if not any(k.startswith(prefix + "head.") for k in state_dict):
            return
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            old = next((o for o in self._legacy if rest.startswith(o)), None)
            if old is not None:
                state_dict[prefix + self._legacy[old] + rest[len(old):]] = state_dict.pop(key)


def _make_builder(tv_name: str):
    def builder(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> TorchvisionAdapter:
        if kwargs.pop("weights", None):
            raise ValueError(f"weights= is not supported by tv_{tv_name}: pass pretrained=True (fit "
                             "--pretrained) for torchvision's default weights, or load a state_dict "
                             "(fit --init)")
        import torchvision

        model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        adapter = TorchvisionAdapter(model)
        if pretrained:
            from .pretrained import load_torchvision_weights

            load_torchvision_weights(adapter, tv_name)
        return adapter

    builder.__name__ = f"tv_{tv_name}"
    builder.__doc__ = (f"torchvision ``{tv_name}`` (random init, or ``pretrained=True`` for torchvision's "
                       "default weights from its local cache), auxtrain interface.")
    return builder


def _register_all() -> None:
    import torchvision

    for tv_name in torchvision.models.list_models(module=torchvision.models):
        if tv_name.startswith(SUPPORTED_FAMILIES):
            register_model(_make_builder(tv_name))


register_lazily(_register_all)
