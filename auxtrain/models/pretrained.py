"""``pretrained=True``: timm's and torchvision's own weight loading, with a clear error when offline.

Both libraries read a local cache first (torchvision: ``$TORCH_HOME/hub/checkpoints/<file>``;
timm: the Hugging Face cache, ``$HF_HOME/hub``) and download only what is missing. Without a
network and without the file, the error says where to put the file, or to pass it with ``--init``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_torchvision_weights", "create_timm_model", "torchvision_weights", "torchvision_cache_file"]

_FIX = "or pass a weights file you have with --init PATH (fit) / --weights PATH (eval)"


def torchvision_weights(tv_name: str):
    """torchvision's default weights of model ``tv_name`` (e.g. ``ResNet18_Weights.IMAGENET1K_V1``)."""
    import torchvision

    return torchvision.models.get_model_weights(tv_name).DEFAULT


def torchvision_cache_file(weights) -> Path:
    """Where torchvision looks for (and downloads) ``weights``: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def load_torchvision_weights(model: nn.Module, tv_name: str) -> None:
    """Load torchvision's default weights of ``tv_name`` into ``model`` (a ``tv_*`` adapter, same keys).

    A classifier with another class count than the weights' keeps its fresh initialisation.
    """
    weights = torchvision_weights(tv_name)
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, HTTPError, OSError: offline, or a broken download
        raise ValueError(
            f"pretrained tv_{tv_name}: torchvision's weights {weights} are not in the local cache and could "
            f"not be downloaded ({type(exc).__name__}: {exc}); put the file {weights.url} at "
            f"{torchvision_cache_file(weights)} (TORCH_HOME sets the folder), {_FIX}"
        ) from None
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=not skipped)


def create_timm_model(name: str, num_classes: int, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, ...)``; offline without cached weights: a ValueError saying what to do."""
    import timm

    if not pretrained:
        return timm.create_model(name, num_classes=num_classes, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # huggingface_hub's offline errors are OSErrors
        cfg = timm.get_pretrained_cfg(name)
        where = cfg.hf_hub_id or cfg.url or cfg.file if cfg is not None else None
        raise ValueError(
            f"pretrained timm/{name}: timm could not load its weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); they are not in the local Hugging Face "
            f"cache ($HF_HOME/hub) and there is no network. Download {where or 'them'} on a machine with a "
            f"network into that cache, {_FIX}"
        ) from None
