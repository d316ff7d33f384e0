"""``InputNormalization``: the one place where images become network inputs.

Training, evaluation and the exported model all take images as uint8 (0..255) or float in
[0, 1]; this layer scales uint8 to [0, 1] and then applies the per-channel ``(x - mean) / std``
of the dataset, so callers never normalise by hand and cannot normalise twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["InputNormalization"]


class InputNormalization(nn.Module):
    """``(x / 255 - mean) / std`` for uint8 ``x``, ``(x - mean) / std`` for float ``x`` in [0, 1].

    ``mean`` and ``std`` are per channel on the 0..1 scale. uint8 input becomes float32; float
    input keeps its dtype. The statistics are non-persistent buffers, so a model holding this layer
    keeps its own state_dict keys.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean) or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std must have equal, non-zero length and std > 0, got "
                             f"mean={list(mean)}, std={list(std)}")
        for name, value in (("mean", mean), ("std", std)):
            tensor = torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"images must have shape (N, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255
        elif not x.dtype.is_floating_point:
            raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {x.dtype}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"  # noqa: E731
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"
