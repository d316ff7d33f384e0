"""Corruptions as ``nn.Module`` transforms for dataset pipelines and batched training.

Both accept whatever ``corrupt`` accepts (a tensor image or batch, a numpy image, an RGB PIL image)
and return the same type. Randomness comes from ``generator`` (default: a fresh random seed per
call). Note for DataLoader workers: a generator passed here is copied into every worker, so seed
one transform per worker (``worker_init_fn``) or leave ``generator=None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._registry import rand, randint
from ._vocabulary import parse_severities, resolve_names
from .api import _torch_generator, corrupt


class Corrupt(nn.Module):
    """Apply one corruption at a fixed severity: ``Corrupt("fog", 3)(images)``."""

    def __init__(
        self,
        name: str,
        severity: int = 1,
        *,
        profile: str = "auto",
        generator: torch.Generator | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if resolve_names([name], what="name") != [name]:
            raise ValueError(f"name={name!r} is a subset; Corrupt takes one corruption name "
                             "(use RandomCorruption for a subset)")
        (self.severity,) = parse_severities(severity, what="severity")
        self.name = name
        self.profile = profile
        self.generator = generator

    def forward(self, image: Any) -> Any:
        return corrupt(image, self.name, self.severity, generator=self.generator, profile=self.profile)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, severity={self.severity}, profile={self.profile!r}"


class RandomCorruption(nn.Module):
    """Apply a corruption drawn uniformly from ``names`` at a severity drawn from ``severities``.

    For a batch (N, 3, H, W) every image draws its own corruption and severity; the images that
    share a corruption are corrupted together in one call. ``names`` is a list of corruption
    names or a subset accepted by ``get_corruption_names`` ("common", "all", "noise", ...).
    ``p`` is the probability that an image is corrupted at all.
    """

    def __init__(
        self,
        names: str | Sequence[str] = "common",
        severities: int | Sequence[int] = (1, 2, 3, 4, 5),
        *,
        p: float = 1.0,
        profile: str = "auto",
        generator: torch.Generator | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        names = resolve_names(names, what="names")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p} is a probability; use a value in [0, 1]")
        self.names = names
        self.severities = parse_severities(severities)
        self.p = float(p)
        self.profile = profile
        self.generator = generator

    def forward(self, image: Any) -> Any:
        gen = _torch_generator(self.generator, torch.device("cpu"))
        batched = isinstance(image, torch.Tensor) and image.ndim == 4
        n = image.shape[0] if batched else 1
        which = randint(0, len(self.names), (n,), gen, "cpu")
        pick = randint(0, len(self.severities), (n,), gen, "cpu")
        sev = torch.tensor(self.severities)[pick]
        apply = rand((n,), gen, "cpu") < self.p
        if not batched:
            if not bool(apply[0]):
                return image
            return corrupt(image, self.names[int(which[0])], int(sev[0]), generator=gen, profile=self.profile)
        out = image.clone()
        for k in torch.unique(which[apply]).tolist():  # ascending: a fixed draw order
            index = ((which == k) & apply).nonzero().squeeze(1)
            dev_index = index.to(image.device)
            out[dev_index] = corrupt(
                image[dev_index], self.names[k], sev[index], generator=gen, profile=self.profile
            )
        return out

    def extra_repr(self) -> str:
        return f"names={self.names}, severities={self.severities}, p={self.p}, profile={self.profile!r}"
