"""``timm/<name>``: every timm model, by name, when timm is installed (the optional ``[timm]`` extra).

timm models already have the interface auxtrain needs (``forward_features``, ``forward_head``,
``get_classifier``, ``num_classes``), so they are used as they are: no adapter, and the exported
weights load into ``timm.create_model(name, num_classes=...)``. Keyword options go to
``timm.create_model`` (e.g. ``drop_rate=0.1``; for a ViT at CIFAR resolution ``img_size=32,
patch_size=4``). ``timm/<name>.<tag>`` picks a pretrained tag (``timm/resnet18.a1_in1k``).
The names are registered lazily, the first time the registry needs all of its
names, so neither ``import auxtrain.models`` nor ``auxtrain --help`` imports timm.
"""

from __future__ import annotations

import importlib.util

from torch import nn

from ._registry import register_lazily, register_model

__all__ = ["PREFIX"]

PREFIX = "timm/"


def _make_builder(timm_name: str):
    def builder(num_classes: int = 1000, pretrained: bool = False, tag: str | None = None,
                **kwargs) -> nn.Module:
        from .pretrained import create_timm_model

        name = f"{timm_name}.{tag}" if tag else timm_name  # a pretrained tag: timm/resnet18.a1_in1k
        return create_timm_model(name, num_classes, pretrained=pretrained, **kwargs)

    builder.__name__ = PREFIX + timm_name
    builder.__doc__ = f"timm ``{timm_name}`` (``timm.create_model``; ``pretrained=True`` reads timm's cache)."
    return builder


def _register_all() -> None:
    if importlib.util.find_spec("timm") is None:  # timm is optional
        return
    import timm

    for timm_name in timm.list_models():
        register_model(_make_builder(timm_name), name=PREFIX + timm_name)


register_lazily(_register_all)
