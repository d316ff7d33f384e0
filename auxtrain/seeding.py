"""Seeds derived from integer keys: one mixer for every random stream of a run.

A run draws from several independent streams (the data order per epoch, the crops, flips and
corruptions per epoch and rank, the per-sample crops of image folders). Each stream's seed is a
function of its keys only, so any epoch can be replayed after a resume.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mix_seed", "seeded_generator"]


def mix_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer ``keys``; different keys give unrelated streams."""
    a, b = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
