"""Backbones with a timm-style interface and the registry that builds them by name.

Every model: ``forward_features(x)`` (unpooled map), ``forward_head(f, pre_logits=False)``,
``forward``, ``get_classifier()``, ``forward_stages(x, names)`` (features plus named stage
outputs), and the attributes ``num_classes``, ``num_features``, ``stage_names``, ``stage_channels``.
With timm installed, ``timm/<name>`` builds any timm model (used as it is: timm's interface).
"""

from . import timm_models as timm_models  # registers timm/* lazily (timm is imported on first use)
from ._base import Backbone as Backbone
from ._base import ClassifierHead as ClassifierHead
from ._registry import create_model as create_model
from ._registry import is_model as is_model
from ._registry import list_models as list_models
from ._registry import register_model as register_model
from .cifar_resnet import CifarResNet as CifarResNet
from .densenet import DenseNet as DenseNet
from .preact_resnet import PreActResNet as PreActResNet
from .resnet import ResNet as ResNet
from .torchvision_adapter import TorchvisionAdapter as TorchvisionAdapter
from .wide_resnet import WideResNet as WideResNet

__all__ = [
    "Backbone", "ClassifierHead", "create_model", "is_model", "list_models", "register_model",
    "CifarResNet", "DenseNet", "PreActResNet", "ResNet", "TorchvisionAdapter", "WideResNet",
]  # fmt: skip
