"""Swap a model's batch norms for selective ones and back, losslessly.

``convert_selective_bn`` prepares any CNN for a stacked multi-domain batch; ``revert_selective_bn``
turns the trained layers back into the layers the model had (same class, e.g. ``nn.BatchNorm2d``
or timm's ``BatchNormAct2d``) carrying the clean (domain 0) statistics, so the exported model needs
nothing from auxtrain and its state_dict loads strictly into a fresh copy of the original model.
Parameters and statistics are cloned (never shared), and each layer keeps its device, dtype,
training mode and ``requires_grad`` flags.

Which layers convert, and into what, is a small registry keyed by class
(:func:`register_bn_converter`): ``nn.BatchNorm2d`` and timm's ``BatchNormAct2d`` (the selective
core with its activation and drop kept, :class:`SelectiveBatchNormAct2d`) are built in; any other
BatchNorm2d subclass that keeps BatchNorm2d's ``forward`` (plain BN maths) converts like
BatchNorm2d; a subclass with its own ``forward`` is refused unless a converter is registered.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Callable

import torch
from torch import nn

from auxtrain.nn.selective_bn import SelectiveBatchNorm2d

__all__ = ["convert_selective_bn", "revert_selective_bn", "has_selective_bn", "register_bn_converter",
           "selective_like", "SelectiveBatchNormAct2d"]

_CONVERT_OPTIONS = ("running_stats", "momentum", "eps")
# class -> converter(layer, num_domains, options) -> SelectiveBatchNorm2d
Converter = Callable[[nn.BatchNorm2d, int, dict], SelectiveBatchNorm2d]
_CONVERTERS: dict[type, Converter] = {}


class SelectiveBatchNormAct2d(SelectiveBatchNorm2d):
    """:class:`SelectiveBatchNorm2d` followed by ``drop`` and ``act``: timm's ``BatchNormAct2d``, selective.

    Same state_dict keys as ``BatchNormAct2d`` (its ``drop`` and ``act`` submodules are kept as they are).
    """

    def __init__(self, num_features: int, num_domains: int = 2, *, act: nn.Module | None = None,
                 drop: nn.Module | None = None, **kwargs) -> None:
        super().__init__(num_features, num_domains, **kwargs)
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(input)))


def register_bn_converter(cls: type, converter: Converter) -> None:
    """Convert layers of exactly class ``cls`` with ``converter(layer, num_domains, options)``.

    The converter returns a :class:`SelectiveBatchNorm2d` (or subclass) built with
    :func:`selective_like`; :func:`revert_selective_bn` gives back a layer of class ``cls``.
    """
    _CONVERTERS[cls] = converter


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


def _shell(bn: nn.Module) -> nn.Module:
    """A tensor-free copy of ``bn`` (class, attributes, names of its tensors and children) for reverting."""
    shell = copy.copy(bn)
    shell._parameters = dict.fromkeys(bn._parameters)
    shell._buffers = dict.fromkeys(bn._buffers)
    shell._modules = dict.fromkeys(bn._modules)
    return shell


def selective_like(bn: nn.BatchNorm2d, num_domains: int, options: dict,
                   cls: type[SelectiveBatchNorm2d] = SelectiveBatchNorm2d, **extra) -> SelectiveBatchNorm2d:
    """A ``cls`` layer with ``bn``'s sizes, options (``options`` override momentum/eps) and state.

    The new layer remembers ``bn``'s class and attributes, so reverting it gives a ``type(bn)`` again.
    """
    new = cls(
        bn.num_features, num_domains, eps=options.get("eps", bn.eps),
        momentum=options.get("momentum", bn.momentum),
        affine=bn.affine, running_stats=options.get("running_stats", "clean"),
        track_running_stats=bn.track_running_stats, **_factory(bn), **extra,
    )
    _copy_state(bn, new)
    if new.per_domain:
        with torch.no_grad():
            new.domain_running_mean.copy_(bn.running_mean.expand_as(new.domain_running_mean))
            new.domain_running_var.copy_(bn.running_var.expand_as(new.domain_running_var))
    new.__dict__["_source_shell"] = _shell(bn)  # not a submodule: no state_dict keys
    return new


def _convert_batch_norm_act(bn: nn.BatchNorm2d, num_domains: int, options: dict) -> SelectiveBatchNorm2d:
    return selective_like(bn, num_domains, options, SelectiveBatchNormAct2d, act=bn.act, drop=bn.drop)


def _register_known() -> None:
    """Built-in converters; timm's only once timm is imported (a timm layer implies it is)."""
    _CONVERTERS.setdefault(nn.BatchNorm2d, selective_like)
    norm_act = sys.modules.get("timm.layers.norm_act")
    if norm_act is not None:
        _CONVERTERS.setdefault(norm_act.BatchNormAct2d, _convert_batch_norm_act)


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
    if not isinstance(bn, nn.BatchNorm2d):
        return bn
    converter = _CONVERTERS.get(type(bn))
    if converter is None:
        if isinstance(bn, nn.modules.lazy.LazyModuleMixin) or type(bn).forward is not nn.BatchNorm2d.forward:
            raise TypeError(
                f"cannot convert {type(bn).__name__}, a subclass of BatchNorm2d with its own forward "
                "(an activation, lazy shapes, ...): register a converter with "
                "auxtrain.nn.convert.register_bn_converter, or replace it with nn.BatchNorm2d (after a "
                "first forward pass for lazy layers) before convert_selective_bn"
            )
        converter = selective_like  # plain BN maths: BatchNorm2d's forward
    return converter(bn, num_domains, options)


def _to_plain(bn: nn.Module) -> nn.Module:
    if not isinstance(bn, SelectiveBatchNorm2d):
        return bn
    shell = bn.__dict__.get("_source_shell")
    if shell is None:  # built directly, not by convert_selective_bn
        new = nn.BatchNorm2d(
            bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
            track_running_stats=bn.track_running_stats, **_factory(bn),
        )
        _copy_state(bn, new)
        return new
    new = copy.copy(shell)
    new._parameters = {
        name: None if getattr(bn, name) is None
        else nn.Parameter(getattr(bn, name).detach().clone(), requires_grad=getattr(bn, name).requires_grad)
        for name in shell._parameters
    }
    new._buffers = {name: None if bn._buffers.get(name) is None else bn._buffers[name].detach().clone()
                    for name in shell._buffers}
    new._modules = {name: bn._modules.get(name, child) for name, child in shell._modules.items()}
    new.eps, new.momentum, new.training = bn.eps, bn.momentum, bn.training
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
    """Replace every BatchNorm2d layer in ``model`` by a :class:`SelectiveBatchNorm2d`.

    ``nn.BatchNorm2d``, timm's ``BatchNormAct2d`` (into :class:`SelectiveBatchNormAct2d`), plain-maths
    BatchNorm2d subclasses and registered classes convert (BatchNorm1d/3d, InstanceNorm, GroupNorm
    and LayerNorm stay as they are). Weights, biases and running statistics are cloned; device, dtype,
    training mode and ``requires_grad`` are kept. In ``per_domain`` mode every domain's statistics
    start as a copy of the clean ones. The model is modified in place and returned; if ``model`` is
    itself a batch norm, the new layer is returned. A model without any BatchNorm2d (e.g. a ViT or a
    ConvNeXt) is returned unchanged with a warning: there is nothing to make selective.

    Args:
        model: the network (or a single BatchNorm2d).
        num_domains: number of domains D (clean + one per auxiliary view).
        **kwargs: ``running_stats`` (``"clean"``, default, or ``"per_domain"``); ``momentum`` and
            ``eps`` override the source layers' values when given.

    Raises:
        TypeError: for SyncBatchNorm (convert the plain-BN model instead) or a BatchNorm2d subclass
            with its own ``forward`` and no registered converter, and for unknown keyword arguments.

    Example::

        model = convert_selective_bn(timm.create_model("efficientnet_b0", num_classes=10), num_domains=2)
    """
    unknown = sorted(set(kwargs) - set(_CONVERT_OPTIONS))
    if unknown:
        raise TypeError(
            f"convert_selective_bn got unknown options {unknown}; valid: {list(_CONVERT_OPTIONS)}"
        )
    if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < 1:
        raise ValueError(f"num_domains must be a positive int, got {num_domains!r}")
    _register_known()
    new = _replace(model, lambda m: _to_selective(m, num_domains, kwargs), {})
    if not has_selective_bn(new):
        warnings.warn(
            f"{type(model).__name__} has no BatchNorm2d layer, so convert_selective_bn leaves it unchanged: "
            "there is no selective BN (its normalisation layers, if any, never pool samples of different "
            "domains); auxiliary heads, distillation and weight tying still apply",
            stacklevel=2,
        )
    return new


def has_selective_bn(model: nn.Module) -> bool:
    """True if ``model`` holds at least one :class:`SelectiveBatchNorm2d`."""
    return any(isinstance(m, SelectiveBatchNorm2d) for m in model.modules())


def revert_selective_bn(model: nn.Module) -> nn.Module:
    """Turn every :class:`SelectiveBatchNorm2d` in ``model`` back into the layer it was converted from.

    The layer gets back its original class (``nn.BatchNorm2d``, timm's ``BatchNormAct2d``, ...) with
    the shared affine parameters and the clean (domain 0) running statistics; per-domain statistics
    are dropped. A SelectiveBatchNorm2d built directly becomes ``nn.BatchNorm2d``. Device, dtype,
    training mode and ``requires_grad`` are kept. The model is modified in place and returned (a new
    layer if ``model`` is itself a SelectiveBatchNorm2d).
    """
    return _replace(model, _to_plain, {})
