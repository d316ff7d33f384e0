"""Colour corruptions: brightness (weather), contrast (digital) and saturate (extra).

brightness and saturate are defined through scikit-image's RGB -> HSV -> RGB round trip. Both
only rescale one HSV coordinate, so they have closed forms in RGB that need no hue at all (with
v = max(r, g, b), m = min(r, g, b), s = (v - m) / v, every channel is v * (1 - s * f(hue))):

- changing V to v' multiplies every channel by v' / v (black pixels, v = 0, become grey v');
- changing S to s' maps each channel to v - (v - channel) * s' / s; grey pixels (s = 0, hue 0 by
  scikit-image's convention) become (v, v (1 - s'), v (1 - s')), i.e. tinted red as in the
  reference.

These are exact rewrites of the round trip (tests compare against scikit-image), vectorised over
the batch and about ten times cheaper than converting to HSV and back.
"""

from __future__ import annotations

import torch

from ._registry import register


@register(
    "brightness",
    cifar=(0.05, 0.1, 0.15, 0.2, 0.3),
    imagenet=(0.1, 0.2, 0.3, 0.4, 0.5),
    deterministic=True,
)
def brightness_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """HSV value V -> clip(V + c, 0, 1), hue and saturation kept."""
    (c,) = params
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp_(0.0, 1.0)
    scale = v_new / v.clamp_min(1e-12)
    return torch.where(v > 0, x * scale, v_new)


@register(
    "contrast",
    cifar=(0.75, 0.5, 0.4, 0.3, 0.15),
    imagenet=(0.4, 0.3, 0.2, 0.1, 0.05),
    deterministic=True,
)
def contrast_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """(x - mean) * c + mean, with the mean per image and channel."""
    (c,) = params
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means).mul_(c).add_(means)


@register(
    "saturate",
    cifar=((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    imagenet=((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    deterministic=True,
)
def saturate_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation S -> clip(S * c0 + c1, 0, 1), hue and value kept."""
    c0, c1 = params
    v = x.amax(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    chromatic = delta > 0
    s = torch.where(chromatic, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * c0 + c1).clamp_(0.0, 1.0)
    # Chromatic pixels: v - (v - x) * s' / s, with s' / s = s' * v / delta.
    ratio = s_new * v / delta.clamp_min(1e-12)
    out = v - (v - x) * ratio
    # Grey pixels have hue 0 (red): channels (v, v (1 - s'), v (1 - s')).
    grey = v * (1.0 - s_new)
    grey = torch.cat([v, grey, grey], dim=1)
    return torch.where(chromatic, out, grey)
