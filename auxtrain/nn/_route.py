"""Routing a stacked batch to its domains: ``route_domains`` and the route it hands to each layer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn


class _Route:
    """The routing of one batch: consecutive chunk sizes, or a per-sample domain index.

    For index routing the samples are sorted by domain once here (stable), so every layer reuses
    the permutation and the per-domain counts without a device sync.
    """

    __slots__ = ("sizes", "index", "perm", "inv_perm")

    def __init__(self, sizes: Sequence[int] | None, index: Tensor | None) -> None:
        if (sizes is None) == (index is None):
            raise ValueError(
                "route_domains needs exactly one of sizes= (consecutive chunk sizes, e.g. sizes=[64, 64]) "
                f"or index= (a per-sample tensor of domain ids); got sizes={sizes!r}, "
                f"index={'None' if index is None else 'a tensor'}"
            )
        self.index = self.perm = self.inv_perm = None
        if sizes is not None:
            if isinstance(sizes, Tensor):
                sizes = sizes.tolist()
            try:
                sizes = tuple(int(s) for s in sizes)
            except (TypeError, ValueError):
                raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}") from None
            if not sizes or min(sizes) < 0:
                raise ValueError(
                    f"sizes must be a non-empty sequence of non-negative ints, got {list(sizes)}"
                )
            self.sizes = sizes
            return
        if not isinstance(index, Tensor):
            raise TypeError(
                f"index must be a 1-D integer torch.Tensor of domain ids, got {type(index).__name__}"
            )
        dtype = index.dtype
        if index.dim() != 1 or dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise ValueError(
                f"index must be a 1-D integer tensor (one domain id per sample), got shape "
                f"{tuple(index.shape)} and dtype {index.dtype}"
            )
        index = index.long()
        if index.numel() and int(index.min()) < 0:
            raise ValueError(f"index holds a negative domain id ({int(index.min())}); domain ids start at 0")
        counts = torch.bincount(index) if index.numel() else index.new_zeros(1)
        self.sizes = tuple(int(c) for c in counts.tolist())
        self.index = index
        self.perm = torch.argsort(index, stable=True)
        self.inv_perm = torch.argsort(self.perm)

    def check(self, layer: nn.Module, input: Tensor) -> tuple[int, ...]:
        """The per-domain sizes, after checking them against ``layer`` and the batch reaching it."""
        sizes, n, name = self.sizes, input.shape[0], type(layer).__name__
        if self.index is not None:
            if self.index.numel() != n:
                raise ValueError(
                    f"route index has {self.index.numel()} entries but the batch reaching "
                    f"{name} has {n} samples; pass one domain id per sample"
                )
        elif sum(sizes) != n:
            raise ValueError(
                f"route sizes {list(sizes)} sum to {sum(sizes)} but the batch reaching "
                f"{name} has {n} samples; the sizes must add up to the batch size"
            )
        if len(sizes) > layer.num_domains:
            what = "domain id" if self.index is not None else "number of chunks"
            raise ValueError(
                f"route uses {len(sizes)} domains ({what} out of range) but this layer has "
                f"num_domains={layer.num_domains}; convert with num_domains >= {len(sizes)}"
            )
        if layer.training:
            spatial = input.shape[2] * input.shape[3]
            for d, size in enumerate(sizes):
                if size * spatial == 1:
                    raise ValueError(
                        f"domain {d} has a single value per channel (1 sample of {input.shape[2]}x"
                        f"{input.shape[3]}) in training; batch statistics need more than one value: "
                        "use more samples per domain"
                    )
        return sizes


class RoutedLayer:
    """Marks the layers that :func:`route_domains` routes (SelectiveBatchNorm2d); each reads
    ``self._route`` when it runs (None outside any route)."""

    _route: _Route | None = None


@contextlib.contextmanager
def route_domains(
    module: nn.Module, sizes: Sequence[int] | None = None, index: Tensor | None = None
) -> Iterator[None]:
    """Route every :class:`SelectiveBatchNorm2d` inside ``module`` for the duration of a ``with`` block.

    Args:
        module: a model (or a single layer) containing SelectiveBatchNorm2d layers.
        sizes: consecutive chunk sizes ``[n0, n1, ...]``: the first n0 samples are domain 0, the
            next n1 domain 1, ...
        index: alternatively, a 1-D integer tensor with one domain id per sample.

    Exactly one of ``sizes`` and ``index`` must be given. On exit (also on an exception) each layer
    gets back the routing it had before, so blocks nest; nothing is stored globally (copies made
    inside the block do not keep the route). Batch sizes and domain ids are checked against each
    layer when it runs (ValueError). The routing lives on the layers, so one model must not run
    under two different routes at the same time (e.g. from two threads).

    A module without any BatchNorm layer needs no routing: the block runs it
    unchanged.

    Raises:
        ValueError: neither or both of sizes/index, negative sizes or ids, a non-integer index, or
            a module with batch norms but no SelectiveBatchNorm2d (convert it with
            ``convert_selective_bn``).

    Example::

        with route_domains(model, sizes=[64, 64, 64]):   # clean batch + two corrupted views
            logits = model(torch.cat([x, x_noise, x_blur]))
    """
    route = _Route(sizes, index)
    layers = [m for m in module.modules() if isinstance(m, RoutedLayer)]
    if not layers and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        yield  # no batch norm at all (a ViT, a ConvNeXt): no sample shares statistics, nothing to route
        return
    if not layers:
        raise ValueError(
            f"{type(module).__name__} contains no SelectiveBatchNorm2d to route; convert its batch norms "
            "first with auxtrain.nn.convert_selective_bn(model, num_domains)"
        )
    previous = [(layer, layer._route) for layer in layers]
    try:
        for layer in layers:
            layer._route = route
        yield
    finally:
        for layer, old in previous:
            layer._route = old

