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
    u = x.mul_(255.0)  # grey levels: exact integers for 8-bit input, so max/min lose no precision
    v = u.amax(dim=1, keepdim=True)
    v_new = (v + 255.0 * c).clamp_(0.0, 255.0)
    scale = v_new / v.clamp_min(1e-12)
    return torch.where(v > 0, u * scale, v_new).div_(255.0)


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
    # Grey levels: exact integers for 8-bit input, so v - min and v - x carry no round-off
    # (S = delta / v of two nearby values would otherwise lose ~1e-4 grey levels).
    u = x.mul_(255.0)
    v = u.amax(dim=1, keepdim=True)
    delta = v - u.amin(dim=1, keepdim=True)
    chromatic = delta > 0
    s = delta / v.clamp_min(1e-12)
    s_new = (s * c0 + c1).clamp_(0.0, 1.0)
    # Chromatic pixels: v - (v - x) * s' / s = v - (v - x) / delta * s' * v.
    out = v - (v - u) / delta.clamp_min(1e-12) * (s_new * v)
    # Grey pixels (S = 0) have hue 0, red: channels (v, v (1 - s'), v (1 - s')).
    grey = v * (1.0 - s_new)
    out = torch.where(chromatic, out, torch.cat([v, grey, grey], dim=1))
    return out.div_(255.0)
