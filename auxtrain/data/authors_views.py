"""The four training views of the authors' code (ArchipLab-LinfengZhang/Auxiliary-Training, train.py).

``authors_blur``: PIL ``GaussianBlur(1.0)`` (a Gaussian of standard deviation 1 px; here a 7-tap
kernel, +-3 sigma, with edge replication like PIL's). ``authors_noise``: Gaussian noise of std 20
grey levels, truncated to integers as their ``np.uint8`` cast does, but clipped to 0..255 where
their code wraps around (``method.md``: a bug not to copy). ``authors_jitter``: torchvision
``ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5)``: three factors in [0.5, 1.5] applied
in a random order, each image its own. ``authors_rotate``: ``RandomRotation(30)``: an angle in
[-30, 30] degrees about the centre, nearest neighbour, black fill.

These are not test corruptions and have no severities: they live here, beside the AugMix view,
as *view kinds* that branches may name (:mod:`auxtrain.data.views`), not in the ``corruptions``
library, whose vocabulary (``all``, the families, ``make_c``) defines the benchmark and must never
put them into a -C set or an mCE. Each takes a (n, 3, H, W) uint8 batch (or float in [0, 1]) and
a generator, draws everything per image from it, and returns the input's shape, dtype and device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from auxtrain.data.augmix import warp_affine

__all__ = ["AUTHORS_VIEWS", "authors_blur", "authors_noise", "authors_jitter", "authors_rotate"]

_GREY = (0.299, 0.587, 0.114)  # PIL's RGB -> L weights


def _as_uint8(fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]):
    """Run ``fn`` on 8-bit grey levels (float 0..255) and return the input's dtype."""

    def view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        is_float = images.is_floating_point()
        x = (images * 255).round() if is_float else images.float()
        out = fn(x, generator).round_().clamp_(0, 255)
        return out / 255 if is_float else out.to(torch.uint8)

    view.__name__, view.__doc__ = fn.__name__, fn.__doc__
    return view


def _rand(size: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(size, generator=generator, device=generator.device).to(device)


@_as_uint8
def authors_blur(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PIL GaussianBlur(radius=1): separable Gaussian, sigma 1 px, edges replicated."""
    taps = torch.arange(-3, 4, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-0.5 * taps**2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 7).repeat(c, 1, 1, 1),
                   groups=c)
    return F.conv2d(F.pad(out, (0, 0, 3, 3), mode="replicate"), kernel.view(1, 1, 7, 1).repeat(c, 1, 1, 1),
                    groups=c)


@_as_uint8
def authors_noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise, std 20 grey levels, truncated to integers, clipped (not wrapped) to 0..255."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device) * 20
    return (x + noise.trunc()).clamp_(0, 255)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``other + factor * (x - other)``, rounded to 8 bits like PIL's output."""
    return (other + factor * (x - other)).clamp_(0, 255).round_()


@_as_uint8
def authors_jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ColorJitter(0.5, 0.5, 0.5): brightness, contrast, saturation factors in [0.5, 1.5], random order."""
    n, dev = x.shape[0], x.device
    factors = (_rand((n, 3), generator, dev) + 0.5).view(n, 3, 1, 1, 1)
    order = _rand((n, 3), generator, dev).argsort(dim=1)  # a random permutation per image
    grey_weights = torch.tensor(_GREY, device=dev).view(1, 3, 1, 1)
    for position in range(3):
        grey = (x * grey_weights).sum(1, keepdim=True)
        candidates = (
            _blend(x, torch.zeros_like(x), factors[:, 0]),                                  # brightness
            _blend(x, grey.mean((2, 3), keepdim=True).round().expand_as(x), factors[:, 1]),  # contrast
            _blend(x, grey.round().expand_as(x), factors[:, 2]),                             # saturation
        )
        pick = order[:, position].view(n, 1, 1, 1)
        x = torch.where(pick == 0, candidates[0], torch.where(pick == 1, candidates[1], candidates[2]))
    return x


def authors_rotate(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RandomRotation(30): a uniform angle in [-30, 30] degrees per image, nearest neighbour, black fill."""
    is_float = images.is_floating_point()
    x = (images * 255).round().to(torch.uint8) if is_float else images
    n, _, h, w = x.shape
    angle = -(_rand((n,), generator, x.device) * 60 - 30) * math.pi / 180  # PIL: counter-clockwise
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    m = torch.stack([torch.stack([cos, sin, cx - cos * cx - sin * cy], 1),
                     torch.stack([-sin, cos, cy + sin * cx - cos * cy], 1)], 1)
    out = warp_affine(x, m, mode="nearest")
    return out / 255 if is_float else out


# The view kinds of the `authors` family, in the order of their code's loaders.
AUTHORS_VIEWS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "authors_blur": authors_blur, "authors_noise": authors_noise, "authors_jitter": authors_jitter,
    "authors_rotate": authors_rotate,
}
