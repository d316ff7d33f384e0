"""Multi-process runs under torchrun: process group set-up and the few collectives fit, eval and make-c need.

``torchrun --nproc-per-node N -m auxtrain fit ...`` sets RANK, WORLD_SIZE and LOCAL_RANK in each
process's environment; ``init_distributed`` reads them, joins the process group (NCCL on CUDA,
Gloo on CPU) and picks the process's device. Without those variables (or with WORLD_SIZE=1) it
returns a single-process context and every helper here is a no-op, so ``auxtrain fit`` without
torchrun runs exactly as before.

How ``fit`` uses it:

- ``--batch-size`` is the global batch; each of the N processes takes batch_size / N images per
  step from a DistributedSampler (seeded by ``--seed``, ``set_epoch`` every epoch) and corrupts
  them with its own generator, seeded by (seed, epoch, rank), so ranks draw different views.
- Gradients are averaged by DistributedDataParallel, so parameters stay identical on all ranks.
- Batch-norm statistics (plain or SelectiveBatchNorm2d, every domain) are computed per process,
  over that process's share of each domain's chunk; no SyncBatchNorm. DDP runs with
  ``broadcast_buffers=False``: broadcasting would only copy rank 0's running statistics to the
  other ranks before each step, and rank 0's own statistics (the ones checkpointed, evaluated and
  exported) are the same either way, so the broadcast would be pure communication cost.
- Only rank 0 writes the run directory, prints, checkpoints and runs the final evaluation. On
  ``--resume`` rank 0 reads the checkpoint and sends it to every rank (no shared filesystem
  needed). Ctrl-C under torchrun stops all processes; the last per-epoch checkpoint resumes.

``auxtrain make-c`` shares the cells of images among the ranks (:func:`corruptions.make_c` with
``distributed=True``; the output folder must be shared); ``auxtrain eval`` shares the
(corruption, severity) sets (:func:`shard`) and gathers the counts, and rank 0 writes the report.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "process_group", "resolve_device", "broadcast_object",
           "run_on_main", "all_reduce_sum", "all_gather_object", "shard", "barrier", "shutdown"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job: ``rank`` of ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files and logs."""
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``"cuda"`` picks the GPU of ``local_rank``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; pass --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)"
                         ) from None


def init_distributed(device: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; returns the context and this process's device."""
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size <= 1:
        return DistContext(), resolve_device(device)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local_rank is None:
        raise ValueError("WORLD_SIZE is set but RANK or LOCAL_RANK is not; launch with torchrun")
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank)
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size)
    return ctx, dev


@contextlib.contextmanager
def process_group(device: str) -> Iterator[tuple[DistContext, torch.device]]:
    """:func:`init_distributed` for a command's ``--device`` value; on leaving, :func:`shutdown`
    of the group if this call joined it (a group the caller set up stays up).

    A bad value (or torchrun environment) is a ValueError that names the flag, which the CLI
    prints as a clear error. Leaving the group matters: a rank that exits with its Gloo group
    still up can abort at interpreter exit ("terminate called without an active exception",
    seen in about half of the 2-process make-c runs on a busy machine).
    """
    joined_before = dist.is_available() and dist.is_initialized()
    try:
        ctx, dev = init_distributed(device)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--device {device!r}: {exc}") from None
    try:
        yield ctx, dev
    finally:
        if not joined_before:
            shutdown(ctx)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (returned unchanged in a single process)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank.

    A ValueError raised by ``fn`` is raised on every rank, so a bad input stops the whole job
    with the same message instead of leaving the other ranks waiting.
    """
    value, error = None, None
    if ctx.is_main:
        try:
            value = fn()
        except ValueError as exc:
            if not ctx.enabled:
                raise
            error = str(exc)
    value, error = broadcast_object((value, error), ctx)
    if error is not None:
        raise ValueError(error)
    return value


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(items: list[T], ctx: DistContext) -> list[T]:
    """This rank's share of ``items``: every world_size-th item from its rank (all of them alone)."""
    return items[ctx.rank::ctx.world_size]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
