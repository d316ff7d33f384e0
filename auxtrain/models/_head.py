"""The classifier head of any timm-interface model, as a module that can be copied for auxiliary heads.

A timm-style model (timm's own, auxtrain's backbones, the ``tv_*`` adapters) has
``forward_features`` (image -> unpooled features) and ``forward_head`` (features -> logits), but
no common head *module*: timm's ResNet pools with ``global_pool`` and classifies with ``fc``, its
MobileNetV3 adds ``conv_head``, a ViT pools tokens and applies ``fc_norm`` and ``head``.
:func:`head_layer_names` finds the model's top-level layers that only ``forward_head`` runs (one
dry run with hooks), and :class:`ForwardHead` is ``model.forward_head`` restricted to them: it
shares those layers with the model (the main head) and ``copy.deepcopy`` of it gives an
independent auxiliary head of the same structure (weight tying pairs parameters by name).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

__all__ = ["ForwardHead", "head_layer_names", "probe_features"]


class ForwardHead(nn.Module):
    """``model.forward_head`` with only the layers it needs (``names``, top-level children of ``model``).

    ``body`` is a shallow copy of ``model`` whose other children, parameters and buffers are
    dropped; the head layers are the model's own (shared, not copied).
    """

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        body = copy.copy(model)
        body._modules = {n: (m if n in names else None) for n, m in model._modules.items()}
        body._parameters = dict.fromkeys(model._parameters)
        body._buffers = dict.fromkeys(model._buffers)
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
                      "_load_state_dict_pre_hooks"):
            if hasattr(body, hooks):
                setattr(body, hooks, OrderedDict())
        self.body = body

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.body.forward_head(x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.body.get_classifier()


def _probe_input(model: nn.Module, size: int) -> torch.Tensor:
    ref = next(model.parameters(), None)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)  # timm ViTs: a fixed size
    hw = tuple(img_size) if img_size else (size, size)
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    return torch.zeros(2, conv.in_channels if conv is not None else 3, *hw, **factory)


@torch.no_grad()
def probe_features(model: nn.Module) -> tuple[tuple[str, ...], torch.Size]:
    """(top-level layers only ``forward_head`` runs, shape of the ``forward_features`` output).

    One dry run in eval mode (no statistics are recorded; each layer's mode is restored), at 64 px
    or, failing that, 224 px (or a ViT's fixed image size).
    """
    phase = ["features"]
    seen: dict[str, set[str]] = {}
    def hook(top: str, module: nn.Module, args: tuple) -> None:
        seen.setdefault(top, set()).add(phase[0])

    # Every layer reports to its top-level child: a forward_head may call a container's layers one by one.
    handles = [module.register_forward_pre_hook(partial(hook, name.split(".")[0]))
               for name, module in model.named_modules() if name]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        error = None
        for size in (64, 224):
            phase[0], error = "features", None
            seen.clear()
            try:
                features = model.forward_features(_probe_input(model, size))
                phase[0] = "head"
                model.forward_head(features)
                break
            except RuntimeError as exc:  # too small an input for this model: try ImageNet size
                error = exc
        if error is not None:
            raise ValueError(f"a dry run of {type(model).__name__}.forward_features/forward_head failed "
                             f"({error}); the model must take (N, C, H, W) images") from error
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes:
            m.training = mode
    return tuple(n for n, phases in seen.items() if phases == {"head"}), features.shape


def head_layer_names(model: nn.Module) -> tuple[str, ...]:
    """The top-level children of ``model`` that only ``forward_head`` runs (see :func:`probe_features`)."""
    return probe_features(model)[0]
