"""Selective batch normalization: one BatchNorm2d whose batch holds several domains.

Auxiliary training (Zhang et al., CVPR 2020) runs a clean batch and K corrupted views of it through
one network. Plain batch norm would pool the statistics of all views; ``SelectiveBatchNorm2d``
normalises each domain's samples with that domain's own batch statistics while the affine weight
and bias stay shared (they receive gradients from every domain). It generalises the record/restore
trick of the authors' code; timm's ``SplitBatchNorm2d`` (AdvProp's auxiliary BNs) differs in giving
each auxiliary BN its own affine parameters as well.

The layer is a subclass of :class:`torch.nn.BatchNorm2d`: the clean (domain 0) statistics and the
affine parameters keep BatchNorm2d's state_dict keys, so plain checkpoints load into it and back.
Which sample belongs to which domain is set from outside with :func:`route_domains`; outside a
route the layer *is* BatchNorm2d.

One implementation serves eager mode and ``torch.compile``: the operator
``auxtrain::selective_batch_norm`` runs ATen's batch-norm kernel (on CPU the one BatchNorm2d uses)
once per domain into that domain's slice of one output, so each domain's numbers are BatchNorm2d's
and nothing is concatenated. Registered with ``torch.library``, declaring that it updates the
running statistics, it stays one node of a compiled graph (no graph break); a
``torch.autograd.Function`` around it gives the backward pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from auxtrain.nn._route import RoutedLayer, _Route, route_domains

__all__ = ["SelectiveBatchNorm2d", "route_domains"]

_RUNNING_STATS = ("clean", "per_domain")
_STATS = ("running_mean", "running_var", "num_batches_tracked",
          "domain_running_mean", "domain_running_var", "domain_num_batches_tracked")
_aten = torch.ops.aten


def _memory_format(x: Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _chunks(sizes: Sequence[int]) -> list[tuple[int, slice]]:
    """(domain, slice of its samples) for each non-empty domain of a batch of consecutive chunks."""
    ends = itertools.accumulate(sizes)
    return [(d, slice(end - n, end)) for d, (n, end) in enumerate(zip(sizes, ends, strict=True)) if n]


def _new_outputs(x: Tensor, weight: Tensor | None, running_mean: Tensor | None,
                 num: int) -> tuple[Tensor, Tensor, Tensor]:
    # float16/bfloat16 inputs get statistics in the parameters' dtype, as ATen's kernel gives them.
    ref = weight if weight is not None else running_mean if running_mean is not None else x
    saved = x.new_zeros((num, x.shape[1]), dtype=ref.dtype)
    return torch.empty_like(x, memory_format=_memory_format(x)), saved, torch.zeros_like(saved)


@torch.library.custom_op("auxtrain::selective_batch_norm", mutates_args=_STATS)
def _selective_batch_norm(
    x: Tensor, weight: Tensor | None, bias: Tensor | None,
    running_mean: Tensor | None, running_var: Tensor | None, num_batches_tracked: Tensor | None,
    domain_running_mean: Tensor | None, domain_running_var: Tensor | None,
    domain_num_batches_tracked: Tensor | None,
    sizes: list[int], training: bool, momentum: float | None, eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch norm of consecutive chunks of ``x`` (``sizes``), each with its own statistics.

    The statistics arguments are the layer's buffers, None where unused. ``training``: normalise
    each chunk with its batch statistics and update its domain's running statistics and batch
    count in place, as BatchNorm2d does; otherwise normalise with the running statistics.
    Returns the output and, per domain, what the backward pass needs: the batch mean and inverse
    standard deviation (training) or the running mean and variance (eval).
    """
    stats = (running_mean, running_var, num_batches_tracked,
             domain_running_mean, domain_running_var, domain_num_batches_tracked)
    x = x.contiguous(memory_format=_memory_format(x))
    out, mean, second = _new_outputs(x, weight, running_mean, len(sizes))
    for d, sl in _chunks(sizes):
        rows = stats[:3] if d == 0 else (None,) * 3 if stats[3] is None else [t[d - 1] for t in stats[3:]]
        rm, rv, count = rows
        factor = 0.0
        if training and count is not None:
            count.add_(1)
            factor = 1.0 / float(count) if momentum is None else momentum
        saved = (mean[d], second[d]) if training else (mean.new_empty(0), mean.new_empty(0))
        _aten.native_batch_norm.out(x[sl], weight, bias, rm, rv, training, factor, eps,
                                    out=out[sl], save_mean=saved[0], save_invstd=saved[1])
        if not training:
            mean[d], second[d] = rm, rv
    return out, mean, second


@_selective_batch_norm.register_fake
def _(x, weight, bias, running_mean, *args):
    return _new_outputs(x, weight, running_mean, len(args[-4]))


class _SelectiveBatchNorm(torch.autograd.Function):
    """Autograd for the operator; torch.compile traces both directions without a graph break."""

    @staticmethod
    def forward(ctx, x, weight, bias, sizes, training, momentum, eps, *stats):
        out, mean, second = _selective_batch_norm(x, weight, bias, *stats, sizes, training, momentum, eps)
        ctx.save_for_backward(x, weight, mean, second)
        ctx.sizes, ctx.training, ctx.eps = sizes, training, eps
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, second = ctx.saved_tensors
        chunks, training, eps = _chunks(ctx.sizes), ctx.training, ctx.eps
        fmt = _memory_format(x)
        x, grad = x.contiguous(memory_format=fmt), grad.contiguous(memory_format=fmt)
        mask, no_grads = list(ctx.needs_input_grad[:3]), (None,) * 10
        w = weight if weight is not None else mean.new_ones(x.shape[1])

        def kernel(d: int, sl: slice, output_mask: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
            saved = (None, None, mean[d], second[d]) if training else (mean[d], second[d], None, None)
            return _aten.native_batch_norm_backward(grad[sl], x[sl], w, *saved, training, eps, output_mask)

        if torch.is_grad_enabled():  # create_graph=True: ATen's differentiable kernels (double backward)
            parts = [kernel(d, sl, mask) for d, sl in chunks]
            grad_x = torch.cat([p[0] for p in parts]) if mask[0] else None
            return grad_x, *(sum(p[i] for p in parts) if mask[i] else None for i in (1, 2)), *no_grads
        # First order. Per domain, ATen's kernel gives the per-channel reductions sum(g * xhat) and
        # sum(g) only (its out= variant computes a full-size result and copies it); then two
        # elementwise ops per domain write grad_x = a*g + k*x + c into the domain's slice.
        dot, sum_g = torch.zeros_like(mean), torch.zeros_like(mean)
        for d, sl in chunks:
            _, dot[d], sum_g[d] = kernel(d, sl, [False, True, True])
        grad_x = torch.empty_like(x, memory_format=fmt) if mask[0] else None
        if grad_x is not None:
            invstd = second if training else torch.rsqrt(second + eps)
            a = w * invstd
            n = mean.new_tensor(ctx.sizes).mul_(x.shape[2] * x.shape[3]).clamp_(min=1).unsqueeze(1)
            k = -a * invstd * dot / n
            a, k, c = (t[:, :, None, None] for t in (a, k, -a * sum_g / n - k * mean))
            for d, sl in chunks:
                if training:
                    torch.addcmul(c[d], grad[sl], a[d], out=grad_x[sl]).addcmul_(x[sl], k[d])
                else:  # the running statistics are constants
                    torch.mul(grad[sl], a[d], out=grad_x[sl])
        grad_w = dot.sum(0).to(w.dtype) if mask[1] else None
        return grad_x, grad_w, sum_g.sum(0).to(w.dtype) if mask[2] else None, *no_grads


class SelectiveBatchNorm2d(nn.BatchNorm2d, RoutedLayer):
    """BatchNorm2d over a batch made of ``num_domains`` domains (domain 0 = clean).

    Training, inside :func:`route_domains`: each domain's samples are normalised with that
    domain's own batch mean and (biased) variance; the affine ``weight`` and ``bias`` are shared.
    Running statistics (unbiased variance, ``momentum`` or the cumulative average for
    ``momentum=None``, exactly as BatchNorm2d) are updated from domain 0 only
    (``running_stats="clean"``, the method's default), or one set per domain
    (``running_stats="per_domain"``; domains 1.. live in the extra buffers ``domain_running_mean``,
    ``domain_running_var`` and ``domain_num_batches_tracked``). ``per_domain`` keeps per-domain
    running statistics while the affine parameters stay shared, unlike AdvProp's auxiliary BNs,
    which also have their own affine parameters.

    Eval: domain 0's running statistics, i.e. plain BatchNorm2d; in ``per_domain`` mode, inside a
    route, each sample uses its own domain's running statistics. Outside any route the layer is
    exactly ``nn.BatchNorm2d``.

    Eager mode and torch.compile run the same operator (see the module docstring).
    float16/bfloat16 inputs (e.g. under autocast) are normalised with float32 statistics and
    returned in their own dtype, as BatchNorm2d does. Double backward is supported.

    Distributed: under DistributedDataParallel every process normalises its own share of each
    domain and keeps its own statistics, exactly like BatchNorm2d (this is not a SyncBatchNorm;
    DDP's buffer broadcast, if on, copies rank 0's statistics, the per-domain ones included).
    Route each process's local batch. Do not apply ``SyncBatchNorm.convert_sync_batchnorm`` to a
    converted model: it turns every batch norm, this one included, into a SyncBatchNorm that
    pools the domains. ``nn.DataParallel`` splits the batch across replicas, so the sizes no
    longer match and the layer raises; use DDP.

    Args:
        num_features: number of channels C of the (N, C, H, W) input.
        num_domains: number of domains D a route may use (ids 0..D-1).
        eps, momentum, affine, device, dtype: as for :class:`torch.nn.BatchNorm2d`.
        running_stats: ``"clean"`` or ``"per_domain"``.
        track_running_stats: as for BatchNorm2d; ``False`` always normalises with batch
            statistics and cannot be combined with ``running_stats="per_domain"``.

    Example::

        bn = SelectiveBatchNorm2d(64, num_domains=3)
        with route_domains(bn, sizes=[32, 32, 32]):
            y = bn(torch.randn(96, 64, 8, 8))
    """

    def __init__(self, num_features: int, num_domains: int = 2, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, running_stats: str = "clean",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 track_running_stats: bool = True) -> None:
        if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < 1:
            raise ValueError(
                f"num_domains must be a positive int (clean domain + views), got {num_domains!r}"
            )
        if running_stats not in _RUNNING_STATS:
            raise ValueError(f"running_stats must be one of {_RUNNING_STATS}, got {running_stats!r}")
        if running_stats == "per_domain" and not track_running_stats:
            raise ValueError(
                "running_stats='per_domain' keeps running statistics per domain and needs "
                "track_running_stats=True; use running_stats='clean' with track_running_stats=False"
            )
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.num_domains = num_domains
        self.running_stats = running_stats
        self._route: _Route | None = None
        if running_stats == "per_domain":
            shape, factory = (num_domains - 1, num_features), {"device": device, "dtype": dtype}
            self.register_buffer("domain_running_mean", torch.zeros(shape, **factory))
            self.register_buffer("domain_running_var", torch.ones(shape, **factory))
            counts = torch.zeros(shape[0], dtype=torch.long, device=device)
            self.register_buffer("domain_num_batches_tracked", counts)

    def __getstate__(self) -> dict:
        # A copy or pickle made inside a ``with route_domains(...)`` block must not keep the route.
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_route": None}

    @property
    def per_domain(self) -> bool:
        return self.running_stats == "per_domain"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_domains={self.num_domains}, running_stats={self.running_stats!r}"

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if getattr(self, "running_stats", None) == "per_domain":
            self.domain_running_mean.zero_()
            self.domain_running_var.fill_(1)
            self.domain_num_batches_tracked.zero_()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # A plain BatchNorm2d checkpoint has no per-domain statistics: start them from the clean ones.
        if self.running_stats == "per_domain" and prefix + "running_mean" in state_dict:
            extra = self.num_domains - 1
            for name in ("running_mean", "running_var"):
                if prefix + "domain_" + name not in state_dict:
                    clean = state_dict[prefix + name].detach().reshape(1, -1)
                    state_dict[prefix + "domain_" + name] = clean.repeat(extra, 1)
            if prefix + "domain_num_batches_tracked" not in state_dict:
                state_dict[prefix + "domain_num_batches_tracked"] = torch.zeros(extra, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, input: Tensor) -> Tensor:
        route = self._route
        if route is None:
            return super().forward(input)
        self._check_input_dim(input)
        sizes = route.check(self, input)
        batch_stats = self.training or self.running_mean is None
        if len(sizes) == 1 or not (batch_stats or self.per_domain):
            return super().forward(input)  # one domain, or eval with the clean statistics
        # The buffers the operator updates (training) or normalises with (eval), as BatchNorm2d.
        use = not self.training or self.track_running_stats
        stats = [getattr(self, name, None) if use else None for name in _STATS]
        momentum = None if self.momentum is None else float(self.momentum)
        # Index routing: sort the samples by domain, normalise consecutive chunks, put them back.
        x = input if route.index is None else input.index_select(0, route.perm.to(input.device))
        y = _SelectiveBatchNorm.apply(x, self.weight, self.bias, list(sizes), batch_stats, momentum,
                                      float(self.eps), *stats)
        if route.index is None:
            return y
        y = y.index_select(0, route.inv_perm.to(y.device))
        return y.contiguous(memory_format=_memory_format(input))
