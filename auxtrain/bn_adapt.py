"""Test-time BatchNorm adaptation (Schneider et al., NeurIPS 2020), opt-in at evaluation.

A corrupted test set shifts the statistics of every BatchNorm layer's input; normalising with
each test batch's own statistics undoes much of that shift. Schneider et al. mix the two with a
prior strength N: for a batch of n images, a BN layer in eval mode normalises with

    mean = N/(N+n) * running_mean + n/(N+n) * batch_mean     (the same for the variance)

N = 0 uses the batch statistics only, N = inf the running ones only (the standard numbers). The
batch statistics are those BN itself uses in training (biased variance over the batch and the
spatial positions). Only eval-mode layers are changed; the running statistics are never updated,
so the model is left exactly as it was.

Each evaluation batch holds one (corruption, severity) cell in auxtrain's evaluation, so the
adapted statistics are those of one domain, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["bn_adapted", "adaptable_layers", "batch_weight", "describe"]


def batch_weight(prior: float, n: int) -> float:
    """The weight n/(N+n) of the batch statistics (0 for an infinite prior)."""
    if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not prior >= 0:
        raise ValueError(f"bn prior {prior!r} must be a number, 0 or more (inf: running statistics only)")
    return 0.0 if math.isinf(prior) else n / (prior + n)


def describe(prior: float, batch_size: int) -> str:
    """What the adapted columns used, in words (for the report)."""
    return (f"BatchNorm statistics of each test batch (n = {batch_size} images, fewer in a cell's last "
            f"batch) mixed with the running ones, N/(N+n) x running + n/(N+n) x batch, prior N = {prior:g} "
            "(Schneider et al. 2020)")


def _mix(prior: float, module: nn.modules.batchnorm._BatchNorm, args: tuple) -> None:
    if module.training:
        return
    x = args[0]
    dims = [d for d in range(x.ndim) if d != 1]
    w = batch_weight(prior, x.shape[0])
    with torch.no_grad():
        xf = x.float()
        mean = xf.mean(dims)
        var = xf.var(dims, unbiased=False)
        saved = (module.running_mean, module.running_var)
        module._bn_adapt_saved = saved
        module.running_mean = ((1 - w) * saved[0] + w * mean).to(saved[0].dtype)
        module.running_var = ((1 - w) * saved[1] + w * var).to(saved[1].dtype)


def _restore(module: nn.Module, *_: object) -> None:
    saved = module.__dict__.pop("_bn_adapt_saved", None)
    if saved is not None:
        module.running_mean, module.running_var = saved


def adaptable_layers(model: nn.Module, prior: float) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BN layers with running statistics that adaptation changes; ValueError if none or a bad prior."""
    batch_weight(prior, 1)  # validates the prior
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.running_mean is not None and m.running_var is not None]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with running statistics; "
                         "--bn-adapt has nothing to adapt (leave it out)")
    return layers


@contextmanager
def bn_adapted(model: nn.Module, prior: float) -> Iterator[nn.Module]:
    """Within the block, every eval-mode BatchNorm layer of ``model`` uses the mixed statistics.

    ``prior`` is Schneider et al.'s N (0 or more; ``math.inf`` = the plain model). Works for any
    ``_BatchNorm`` subclass that reads ``running_mean`` / ``running_var`` in its forward (e.g.
    timm's BatchNormAct2d). Raises ValueError if the model has no BN layer with running statistics.
    """
    layers = adaptable_layers(model, prior)
    handles = []
    try:
        for layer in layers:
            handles.append(layer.register_forward_pre_hook(lambda m, a: _mix(prior, m, a)))
            handles.append(layer.register_forward_hook(_restore))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers:  # a forward that raised between the two hooks
            _restore(layer)
