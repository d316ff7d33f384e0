"""Selective batch normalization: one BatchNorm2d whose batch holds several domains.

Auxiliary training (Zhang et al., CVPR 2020) runs a clean batch and K corrupted views of it through
one network. Plain batch norm would pool the statistics of all views; ``SelectiveBatchNorm2d``
normalises each domain's samples with that domain's own batch statistics while the affine weight
and bias stay shared (they receive gradients from every domain). It generalises timm's
``SplitBatchNorm2d`` (AdvProp's auxiliary BN) and the record/restore trick of the authors' code.

The layer is a subclass of :class:`torch.nn.BatchNorm2d`: the clean (domain 0) statistics and the
affine parameters keep BatchNorm2d's state_dict keys, so plain checkpoints load into it and back.
Which sample belongs to which domain is set from outside with :func:`route_domains`; outside a
route the layer *is* BatchNorm2d.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from auxtrain.nn._route import _Route, route_domains

__all__ = ["SelectiveBatchNorm2d", "route_domains"]

_RUNNING_STATS = ("clean", "per_domain")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling()
    return torch._dynamo.is_compiling()


def _memory_format(x: Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _DomainBatchNorm(torch.autograd.Function):
    """Batch norm of consecutive chunks, each with its own statistics, as one autograd node.

    Forward: each chunk goes through ATen's own batch-norm kernel (the one ``nn.BatchNorm2d``
    uses), writing straight into its slice of one output, so per chunk the output and the running
    statistics are bitwise BatchNorm2d's and nothing is concatenated. The Python loop only issues
    one kernel call per domain; it never touches the data. Backward: see the comments there.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, sizes, running, eps):
        fmt = _memory_format(x)
        x = x.contiguous(memory_format=fmt)
        params = [t for t in (weight, bias) if t is not None]
        stat_dtype = params[0].dtype if params else next((r[0].dtype for r in running if r), x.dtype)
        out = torch.empty_like(x, memory_format=fmt)
        save_mean = x.new_empty(len(sizes), x.shape[1], dtype=stat_dtype)
        save_invstd = torch.empty_like(save_mean)
        start = 0
        for d, size in enumerate(sizes):
            if size == 0:
                continue
            rm, rv, factor = running[d] if running[d] is not None else (None, None, 0.0)
            sl = slice(start, start + size)
            torch.ops.aten.native_batch_norm.out(
                x[sl], weight, bias, rm, rv, True, factor, eps,
                out=out[sl], save_mean=save_mean[d], save_invstd=save_invstd[d],
            )
            start += size
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.sizes, ctx.eps, ctx.fmt = sizes, eps, fmt
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        sizes, eps = ctx.sizes, ctx.eps
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        grad = grad.contiguous(memory_format=ctx.fmt)
        bounds, start = [], 0
        for d, size in enumerate(sizes):
            if size:
                bounds.append((d, slice(start, start + size)))
            start += size
        if torch.is_grad_enabled():  # create_graph=True: differentiable kernels (double backward works)
            parts = [
                torch.ops.aten.native_batch_norm_backward(
                    grad[sl], x[sl], weight, None, None, save_mean[d], save_invstd[d], True, eps, mask
                )
                for d, sl in bounds
            ]
            grad_x = torch.cat([p[0] for p in parts]) if mask[0] else None
            grad_w = sum(p[1] for p in parts) if mask[1] else None
            grad_b = sum(p[2] for p in parts) if mask[2] else None
            return grad_x, grad_w, grad_b, None, None, None
        # First-order backward. Per domain, ATen's kernel gives the two per-channel reductions
        # sum(g * xhat) and sum(g) (no full-size output); then one vectorised pass over all domains
        # writes grad_x = a*g + k*x + c into a single buffer (a, k, c per domain and channel).
        w = weight if weight is not None else save_mean.new_ones(x.shape[1])
        dot, sum_g = torch.zeros_like(save_mean), torch.zeros_like(save_mean)
        for d, sl in bounds:
            _, dot[d], sum_g[d] = torch.ops.aten.native_batch_norm_backward(
                grad[sl], x[sl], w, None, None, save_mean[d], save_invstd[d], True, eps, [False, True, True]
            )
        grad_x = None
        if mask[0]:
            counts = save_mean.new_tensor(sizes).mul_(x.shape[2] * x.shape[3]).clamp_(min=1).unsqueeze(1)
            a = w * save_invstd
            k = -a * save_invstd * dot / counts
            c = -a * sum_g / counts - k * save_mean
            grad_x = torch.empty_like(x, memory_format=ctx.fmt)
            if min(sizes) > 0 and max(sizes) == min(sizes):
                shape = (len(sizes), 1, x.shape[1], 1, 1)
                a, k, c = a.view(shape), k.view(shape), c.view(shape)
                gv, xv, out = (t.unflatten(0, (len(sizes), -1)) for t in (grad, x, grad_x))
            else:
                domain = torch.arange(len(sizes), device=x.device).repeat_interleave(
                    torch.tensor(sizes, device=x.device), output_size=x.shape[0]
                )
                a, k, c = (t[domain][:, :, None, None] for t in (a, k, c))
                gv, xv, out = grad, x, grad_x
            torch.addcmul(c, gv, a, out=out)
            out.addcmul_(xv, k)
        return (
            grad_x,
            dot.sum(0).to(weight.dtype) if mask[1] else None,
            sum_g.sum(0).to(weight.dtype) if mask[2] else None,
            None, None, None,
        )


class SelectiveBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over a batch made of ``num_domains`` domains (domain 0 = clean).

    Training, inside :func:`route_domains`: each domain's samples are normalised with that
    domain's own batch mean and (biased) variance; the affine ``weight`` and ``bias`` are shared.
    Running statistics (unbiased variance, ``momentum`` or the cumulative average for
    ``momentum=None``, exactly as BatchNorm2d) are updated from domain 0 only
    (``running_stats="clean"``, the method's default), or one set per domain
    (``running_stats="per_domain"``, AdvProp style; domains 1.. live in the extra buffers
    ``domain_running_mean``, ``domain_running_var`` and ``domain_num_batches_tracked``).

    Eval: domain 0's running statistics, i.e. plain BatchNorm2d; in ``per_domain`` mode, inside a
    route, each sample uses its own domain's running statistics. Outside any route the layer is
    exactly ``nn.BatchNorm2d``.

    Speed: in eager mode all domains go through one autograd node that calls ATen's batch-norm
    kernels (the ones BatchNorm2d uses) once per domain, writing into a single output and a single
    input gradient, so each domain's numbers are bitwise BatchNorm2d's and nothing is copied or
    concatenated. Under ``torch.compile`` the layer switches to plain tensor ops (for equal sizes
    one ``var_mean`` over a (D, B, C, H, W) view, no loop over domains) that compile without graph
    breaks. float16/bfloat16 inputs (e.g. under autocast) are normalised with float32 statistics
    and returned in their own dtype, as BatchNorm2d does. Double backward is supported.

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

    def __init__(
        self,
        num_features: int,
        num_domains: int = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        running_stats: str = "clean",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        track_running_stats: bool = True,
    ) -> None:
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
            factory = {"device": device, "dtype": dtype}
            extra = num_domains - 1
            self.register_buffer("domain_running_mean", torch.zeros(extra, num_features, **factory))
            self.register_buffer("domain_running_var", torch.ones(extra, num_features, **factory))
            self.register_buffer(
                "domain_num_batches_tracked", torch.zeros(extra, dtype=torch.long, device=device)
            )

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

    # ------------------------------------------------------------------ forward
    def forward(self, input: Tensor) -> Tensor:
        route = self._route
        if route is None:
            return super().forward(input)
        self._check_input_dim(input)
        sizes = route.check(self, input)
        use_batch_stats = self.training or self.running_mean is None
        if len(sizes) == 1 or not (use_batch_stats or self.per_domain):
            return super().forward(input)  # one domain, or eval with the clean statistics
        if not use_batch_stats:  # per_domain eval: every sample uses its own domain's running statistics
            return self._forward_domain_running(input, sizes, route.index)
        if route.index is None:
            return self._forward_batch_stats(input, sizes)
        # Index routing: sort the samples by domain, normalise consecutive chunks, put them back.
        y = self._forward_batch_stats(input.index_select(0, route.perm.to(input.device)), sizes)
        y = y.index_select(0, route.inv_perm.to(y.device))
        return y.contiguous(memory_format=_memory_format(input))

    def _factor(self, num_batches_tracked: Tensor, dtype: torch.dtype) -> Tensor | float:
        """The running-average weight after ``num_batches_tracked`` was incremented (as BatchNorm2d)."""
        if self.momentum is None:
            return num_batches_tracked.to(dtype).reciprocal()
        return self.momentum

    def _normalize(self, x: Tensor, num: int) -> tuple[Tensor, Tensor, Tensor]:
        """Normalise ``num`` equal consecutive chunks of x with their own statistics.

        Returns the output and the per-chunk mean and biased variance, both (num, C).
        """
        c = x.shape[1]
        xs = x.float() if x.dtype in _LOW_PRECISION else x
        xv = xs.unflatten(0, (num, x.shape[0] // num))
        var, mean = torch.var_mean(xv, dim=(1, 3, 4), correction=0, keepdim=True)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(scale.dtype).view(1, 1, c, 1, 1)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.to(scale.dtype).view(1, 1, c, 1, 1)
        y = torch.addcmul(shift, xv, scale).flatten(0, 1)
        return y.to(x.dtype), mean.view(num, c), var.view(num, c)

    def _forward_batch_stats(self, x: Tensor, sizes: tuple[int, ...]) -> Tensor:
        """Training (or untracked eval): every domain is normalised with its own batch statistics."""
        update = self.training and self.track_running_stats
        if _is_compiling():
            return self._forward_batch_stats_traceable(x, sizes, update)
        running: list[tuple[Tensor, Tensor, float] | None] = []
        for d, size in enumerate(sizes):
            if update and size > 0 and (d == 0 or self.per_domain):
                rm, rv, tracked = self._running_buffers(d)
                tracked.add_(1)
                factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
                running.append((rm, rv, factor))
            else:
                running.append(None)
        return _DomainBatchNorm.apply(x, self.weight, self.bias, sizes, running, self.eps)

    def _running_buffers(self, d: int) -> tuple[Tensor, Tensor, Tensor]:
        if d == 0:
            return self.running_mean, self.running_var, self.num_batches_tracked
        rows = self.domain_running_mean, self.domain_running_var, self.domain_num_batches_tracked
        return rows[0][d - 1], rows[1][d - 1], rows[2][d - 1]

    def _forward_batch_stats_traceable(self, x: Tensor, sizes: tuple[int, ...], update: bool) -> Tensor:
        """Plain tensor ops for torch.compile (no custom kernel calls, no graph break, no host sync)."""
        spatial = x.shape[2] * x.shape[3]
        if min(sizes) > 0 and max(sizes) == min(sizes):
            y, mean, var = self._normalize(x, len(sizes))
            if update:
                self._update_running(mean.detach(), var.detach(), sizes[0] * spatial, len(sizes))
            return y
        outs = []
        for d, chunk in enumerate(x.split(list(sizes))):
            if sizes[d] == 0:
                continue
            y, mean, var = self._normalize(chunk, 1)
            outs.append(y)
            if update:
                self._update_running_one(d, mean[0].detach(), var[0].detach(), sizes[d] * spatial)
        return torch.cat(outs)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: int, num: int) -> None:
        """Update the running statistics from ``num`` domains that each had ``count`` values per channel."""
        unbiased = var * (count / (count - 1))
        self._update_running_one(0, mean[0], var[0], count, unbiased[0])
        if self.per_domain and num > 1:
            tracked = self.domain_num_batches_tracked[: num - 1]
            tracked.add_(1)
            rm, rv = self.domain_running_mean[: num - 1], self.domain_running_var[: num - 1]
            factor = self._factor(tracked, rm.dtype)
            if isinstance(factor, Tensor):
                factor = factor.unsqueeze(1)
            rm.lerp_(mean[1:].to(rm.dtype), factor)
            rv.lerp_(unbiased[1:].to(rv.dtype), factor)

    @torch.no_grad()
    def _update_running_one(self, d: int, mean: Tensor, var: Tensor, count: int,
                            unbiased: Tensor | None = None) -> None:
        if unbiased is None:
            unbiased = var * (count / (count - 1))
        if d == 0:
            rm, rv, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        elif self.per_domain:
            rm, rv = self.domain_running_mean[d - 1], self.domain_running_var[d - 1]
            tracked = self.domain_num_batches_tracked[d - 1]
        else:
            return
        tracked.add_(1)
        factor = self._factor(tracked, rm.dtype)
        rm.lerp_(mean.to(rm.dtype), factor)
        rv.lerp_(unbiased.to(rv.dtype), factor)

    def _forward_domain_running(self, x: Tensor, sizes: tuple[int, ...], index: Tensor | None) -> Tensor:
        """Eval in per_domain mode: y = x * scale[domain] + shift[domain], per sample."""
        num, c = len(sizes), x.shape[1]
        compute = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
        rm = torch.cat([self.running_mean.unsqueeze(0), self.domain_running_mean[: num - 1]]).to(compute)
        rv = torch.cat([self.running_var.unsqueeze(0), self.domain_running_var[: num - 1]]).to(compute)
        scale = torch.rsqrt(rv + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(compute)
        shift = -rm * scale
        if self.bias is not None:
            shift = shift + self.bias.to(compute)
        xs = x.to(compute)
        if index is None and min(sizes) > 0 and max(sizes) == min(sizes):
            xv = xs.unflatten(0, (num, sizes[0]))
            y = torch.addcmul(shift.view(num, 1, c, 1, 1), xv, scale.view(num, 1, c, 1, 1)).flatten(0, 1)
        else:
            if index is None:
                counts = torch.tensor(sizes, device=x.device)
                index = torch.arange(num, device=x.device).repeat_interleave(counts, output_size=x.shape[0])
            index = index.to(x.device)
            y = torch.addcmul(shift[index][:, :, None, None], xs, scale[index][:, :, None, None])
        return y.to(x.dtype).contiguous(memory_format=_memory_format(x))
