"""The processes sharing one make_c job: the torch.distributed default group, or this process alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Ranks:
    """The ranks sharing the work: the torch.distributed default group, or this process alone."""

    def __init__(self, distributed: bool) -> None:
        import torch.distributed as dist

        self.on = distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.size = dist.get_world_size() if self.on else 1

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0, its result on every rank; its ValueError raised on every rank."""
        if not self.on:
            return fn()
        import torch.distributed as dist

        box = [None]
        if self.rank == 0:
            try:
                box = [("ok", fn())]
            except ValueError as exc:
                box = [("error", str(exc))]
        dist.broadcast_object_list(box, src=0)
        if box[0][0] == "error":
            raise ValueError(box[0][1])
        return box[0][1]

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order."""
        if not self.on:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out
