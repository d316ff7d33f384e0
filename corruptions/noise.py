"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise (benchmark) and speckle_noise (extra).

Formulas of hendrycks/robustness (make_cifar_c.py / ImageNet-C corruptions.py), pixels in [0, 1],
one independent draw per pixel and channel, from the generator only.
"""

from __future__ import annotations

import torch

from ._registry import poisson, rand, randn, register


@register(
    "gaussian_noise",
    cifar=(0.04, 0.06, 0.08, 0.09, 0.10),
    imagenet=(0.08, 0.12, 0.18, 0.26, 0.38),
)
def gaussian_noise_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c^2): additive Gaussian noise with standard deviation c."""
    (c,) = params
    return randn(x.shape, generator, x.device).mul_(c).add_(x)


@register(
    "shot_noise",
    cifar=(500, 250, 100, 75, 50),
    imagenet=(60, 25, 12, 5, 3),
)
def shot_noise_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Poisson(x * c) / c: photon noise with c photons at full intensity (variance x / c)."""
    (c,) = params
    return poisson(x * c, generator).div_(c)


@register(
    "impulse_noise",
    cifar=(0.01, 0.02, 0.03, 0.05, 0.07),
    imagenet=(0.03, 0.06, 0.09, 0.17, 0.27),
)
def impulse_noise_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper as scikit-image's ``random_noise(mode="s&p", amount=c)``.

    Each value (pixel and channel independently) is replaced with probability c, by 1 (salt) or
    0 (pepper) with equal odds. One uniform draw u per value decides both: u < c/2 gives pepper,
    c/2 <= u < c gives salt, which has exactly the same distribution as scikit-image's two draws.
    """
    (c,) = params
    u = rand(x.shape, generator, x.device)
    out = x.masked_fill(u < c, 1.0)
    return out.masked_fill_(u < 0.5 * c, 0.0)


@register(
    "speckle_noise",
    cifar=(0.06, 0.10, 0.12, 0.16, 0.20),
    imagenet=(0.15, 0.20, 0.35, 0.45, 0.60),
)
def speckle_noise_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """x + x * N(0, c^2): multiplicative noise, stronger on bright pixels."""
    (c,) = params
    return randn(x.shape, generator, x.device).mul_(c).add_(1.0).mul_(x)
