"""Swap a model's BatchNorm2d layers for SelectiveBatchNorm2d and back, losslessly.

``convert_selective_bn`` prepares any CNN for a stacked multi-domain batch; ``revert_selective_bn``
turns the trained layers back into plain BatchNorm2d carrying the clean (domain 0) statistics, so
the exported model needs nothing from auxtrain. Parameters and statistics are cloned (never
shared), and each layer keeps its device, dtype, training mode and ``requires_grad`` flags.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from auxtrain.nn.selective_bn import SelectiveBatchNorm2d

__all__ = ["convert_selective_bn", "revert_selective_bn"]

_CONVERT_OPTIONS = ("running_stats", "momentum", "eps")
_UNSET = object()


def _factory(bn: nn.BatchNorm2d) -> dict:
    ref = bn.weight if bn.weight is not None else bn.running_mean
    return {} if ref is None else {"device": ref.device, "dtype": ref.dtype}


@torch.no_grad()
def _copy_state(src: nn.BatchNorm2d, dst: nn.BatchNorm2d) -> None:
    """Clone affine parameters, clean statistics, requires_grad and training mode from src to dst."""
    for name in ("weight", "bias"):
        p = getattr(src, name)
        if p is None:
            dst.register_parameter(name, None)
        else:
            getattr(dst, name).copy_(p)
            getattr(dst, name).requires_grad_(p.requires_grad)
    if src.running_mean is not None:
        dst.running_mean.copy_(src.running_mean)
        dst.running_var.copy_(src.running_var)
        dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.train(src.training)


def _to_selective(bn: nn.Module, num_domains: int, options: dict) -> nn.Module:
    if isinstance(bn, nn.SyncBatchNorm):
        raise TypeError(
            f"cannot convert {type(bn).__name__}: selective BN keeps statistics per domain and per process. "
            "Call convert_selective_bn on the model with plain BatchNorm2d layers (before any "
            "SyncBatchNorm.convert_sync_batchnorm), and do not call convert_sync_batchnorm afterwards: "
            "it would replace the selective layers by SyncBatchNorm and mix the domains again"
        )
    if isinstance(bn, SelectiveBatchNorm2d):
        if bn.num_domains != num_domains:
            raise ValueError(
                f"model already holds a SelectiveBatchNorm2d with num_domains={bn.num_domains}, "
                f"asked for {num_domains}; revert_selective_bn(model) first"
            )
        return bn
    if type(bn) is not nn.BatchNorm2d:
        if isinstance(bn, nn.BatchNorm2d):
            raise TypeError(
                f"cannot convert {type(bn).__name__}, a subclass of BatchNorm2d that may add behaviour "
                "(an activation, lazy shapes, ...): replace it with nn.BatchNorm2d (after a first forward "
                "pass for lazy layers) before convert_selective_bn"
            )
        return bn
    momentum = options.get("momentum", bn.momentum)
    eps = options.get("eps", bn.eps)
    new = SelectiveBatchNorm2d(
        bn.num_features, num_domains, eps=eps, momentum=momentum, affine=bn.affine,
        running_stats=options.get("running_stats", "clean"), track_running_stats=bn.track_running_stats,
        **_factory(bn),
    )
    _copy_state(bn, new)
    if new.per_domain:
        with torch.no_grad():
            new.domain_running_mean.copy_(bn.running_mean.expand_as(new.domain_running_mean))
            new.domain_running_var.copy_(bn.running_var.expand_as(new.domain_running_var))
    return new


def _to_plain(bn: nn.Module) -> nn.Module:
    if not isinstance(bn, SelectiveBatchNorm2d):
        return bn
    new = nn.BatchNorm2d(
        bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
        track_running_stats=bn.track_running_stats, **_factory(bn),
    )
    _copy_state(bn, new)
    return new


def _replace(
    module: nn.Module, fn: Callable[[nn.Module], nn.Module], memo: dict[int, nn.Module]
) -> nn.Module:
    if id(module) in memo:  # a layer used at several places stays one (shared) layer
        return memo[id(module)]
    new = fn(module)
    memo[id(module)] = new
    if new is module:
        for name, child in list(module._modules.items()):  # named_children() skips repeated layers
            if child is None:
                continue
            replaced = _replace(child, fn, memo)
            if replaced is not child:
                setattr(module, name, replaced)
    return new


def convert_selective_bn(model: nn.Module, num_domains: int, **kwargs) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``model`` by a :class:`SelectiveBatchNorm2d`.

    Only exact BatchNorm2d layers are converted (BatchNorm1d/3d and InstanceNorm stay as they are).
    Weights, biases and running statistics are cloned; device, dtype, training mode and
    ``requires_grad`` are kept. In ``per_domain`` mode every domain's statistics start as a copy
    of the clean ones. The model is modified in place and returned; if ``model`` is itself a
    BatchNorm2d, the new layer is returned.

    Args:
        model: the network (or a single BatchNorm2d).
        num_domains: number of domains D (clean + one per auxiliary view).
        **kwargs: ``running_stats`` (``"clean"``, default, or ``"per_domain"``); ``momentum`` and
            ``eps`` override the source layers' values when given.

    Raises:
        TypeError: for SyncBatchNorm (convert the plain-BN model instead) or another BatchNorm2d
            subclass, and for unknown keyword arguments.

    Example::

        model = convert_selective_bn(torchvision.models.resnet18(num_classes=10), num_domains=2)
    """
    unknown = sorted(set(kwargs) - set(_CONVERT_OPTIONS))
    if unknown:
        raise TypeError(
            f"convert_selective_bn got unknown options {unknown}; valid: {list(_CONVERT_OPTIONS)}"
        )
    if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < 1:
        raise ValueError(f"num_domains must be a positive int, got {num_domains!r}")
    return _replace(model, lambda m: _to_selective(m, num_domains, kwargs), {})


def revert_selective_bn(model: nn.Module) -> nn.Module:
    """Turn every :class:`SelectiveBatchNorm2d` in ``model`` back into a plain ``nn.BatchNorm2d``.

    The plain layer carries the shared affine parameters and the clean (domain 0) running
    statistics; per-domain statistics are dropped. Device, dtype, training mode and
    ``requires_grad`` are kept. The model is modified in place and returned (a new layer if
    ``model`` is itself a SelectiveBatchNorm2d).
    """
    return _replace(model, _to_plain, {})
