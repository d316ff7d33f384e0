"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur, batched in torch.

Formulas follow hendrycks/robustness (``make_cifar_c.py`` for the CIFAR table, ``imagenet_c``
for the ImageNet one); motion blur follows imagecorruptions' line kernel because the original
ImageMagick motion blur cannot be reproduced bit for bit. The filters themselves live in
``corruptions._filters`` (Gaussian, 2-D correlation, disk and line kernels) and
``corruptions._zoom`` (clipped zoom); glass blur's pixel sweep, specific to it, is here.
"""

from __future__ import annotations

import numpy as np
import torch

from ._filters import disk_kernel, filter2d, gaussian, line_blur
from ._registry import randint, register, uniform
from ._zoom import zoom_average

# --------------------------------------------------------------------------- gaussian_blur


@register(
    "gaussian_blur", family="blur", benchmark=False, deterministic=True,
    cifar=[(0.4,), (0.6,), (0.7,), (0.8,), (1.0,)],
    imagenet=[(1.0,), (2.0,), (3.0,), (4.0,), (6.0,)],
)
def gaussian_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of each channel (skimage ``gaussian``: truncate 4, border 'nearest')."""
    (sigma,) = params
    return gaussian(x, sigma)


# --------------------------------------------------------------------------- defocus_blur


@register(
    "defocus_blur", family="blur", benchmark=True, deterministic=True,
    cifar=[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],
    imagenet=[(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)],
)
def defocus_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Convolve with the anti-aliased disk (cv2.filter2D semantics: border REFLECT_101)."""
    radius, alias_sigma = params
    k = torch.from_numpy(disk_kernel(float(radius), float(alias_sigma)))
    return filter2d(x, k, "reflect101")


# --------------------------------------------------------------------------- zoom_blur


def _zoom_factors(end: float, step: float) -> tuple[float, ...]:
    # np.arange exactly as the reference (float rounding gives 7/12/16/21/26 factors at CIFAR)
    return tuple(float(z) for z in np.arange(1, end, step))


@register(
    "zoom_blur", family="blur", benchmark=True, deterministic=True,
    cifar=[(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    imagenet=[(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],
)
def zoom_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Average of the image and its clipped zooms by factors ``np.arange(1, end, step)``.

    The factor list starts at 1, so the unzoomed image counts twice, as in the reference.
    """
    end, step = params
    return zoom_average(x, _zoom_factors(end, step))


# --------------------------------------------------------------------------- motion_blur


@register(
    "motion_blur", family="blur", benchmark=True, integer_params=(0,),
    cifar=[(6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)],
    imagenet=[(10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0)],
)
def motion_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Motion blur along a random angle U(-45, 45) degrees per image.

    The original datasets used ImageMagick's MotionBlurImage, which cannot be matched bit for
    bit; like imagecorruptions we use its line kernel (same width, Gaussian weights and
    offsets), so shape and strength match but pixels differ slightly from CIFAR-10-C.
    """
    radius, sigma = params
    angle = uniform(-45.0, 45.0, (x.shape[0],), generator, x.device, torch.float64)
    return line_blur(x, int(radius), float(sigma), angle)


# --------------------------------------------------------------------------- glass_blur


def _glass_offsets(n: int, h: int, w: int, d: int, iterations: int, generator, device):
    """Per-image offsets (dy, dx), each (iterations, n, H - 2d, W - 2d), uniform on -d..d-1.

    Entry [it, i, j, k] belongs to position (d + 1 + j, d + 1 + k) of image i (the swept block,
    stored in ascending order; the sweep itself runs in descending order).
    """
    shape = (iterations, n, max(h - 2 * d, 0), max(w - 2 * d, 0))
    dy = randint(-d, d, shape, generator, device)
    dx = randint(-d, d, shape, generator, device)
    return dy, dx


def _glass_sweep(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, d: int) -> torch.Tensor:
    """The reference's sequential local shuffle, exactly, without a loop over positions.

    The reference visits the swept positions p in descending raster order and COPIES the
    value of q = p + (dy, dx) into p (numpy views make its "swap" a copy). Claim: after one
    sweep, new[p] = new[q] if q is swept and comes before p in the sweep (q > p in raster
    order), else old[q]. Proof: at p's step, q holds new[q] if q was already visited (each
    position is written exactly once, at its own step) and old[q] otherwise. The "comes
    before" links strictly increase the raster index, so they form chains without cycles; we
    resolve every chain at once by pointer jumping (O(log P) rounds of gathers), giving
    new[p] = old[root(p)] for all images in parallel. Non-swept positions keep old values.
    With d = 1 the offsets are in {-1, 0}, q never comes before p, and a sweep is one gather.
    """
    n, c, h, w = x.shape
    hw = h * w
    nh, nw = h - 2 * d, w - 2 * d
    if nh <= 0 or nw <= 0:
        return x
    dev = x.device
    rows = torch.arange(d + 1, h - d + 1, device=dev)[:, None]  # the swept block, ascending
    cols = torch.arange(d + 1, w - d + 1, device=dev)[None, :]
    p = rows * w + cols  # (nh, nw)
    base = torch.arange(hw, device=dev).view(1, h, w)
    flat = x.reshape(n, c, hw)
    for it in range(dy.shape[0]):
        ddy, ddx = dy[it], dx[it]
        src = base.repeat(n, 1, 1)
        src[:, d + 1:h - d + 1, d + 1:w - d + 1] = p + ddy * w + ddx
        if d > 1:
            qr, qc = rows + ddy, cols + ddx
            ahead = (ddy > 0) | ((ddy == 0) & (ddx > 0))
            link_block = ahead & (qr >= d + 1) & (qr <= h - d) & (qc >= d + 1) & (qc <= w - d)
            link = torch.zeros(n, h, w, dtype=torch.bool, device=dev)
            link[:, d + 1:h - d + 1, d + 1:w - d + 1] = link_block
            src, link = src.view(n, hw), link.view(n, hw)
            while bool(link.any()):
                nxt = src.gather(1, src)
                nlink = link.gather(1, src)
                src = torch.where(link, nxt, src)
                link = link & nlink
        flat = flat.gather(2, src.view(n, 1, hw).expand(n, c, hw))
    return flat.reshape(n, c, h, w)


@register(
    "glass_blur", family="blur", benchmark=True, integer_params=(1, 2),
    cifar=[(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    imagenet=[(0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
)
def glass_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, cast to uint8 (truncating), local pixel shuffle, Gaussian blur again.

    The shuffle is the reference's sequential sweep reproduced exactly (see ``_glass_sweep``),
    with offsets drawn per image from -d..d-1 (the reference's asymmetric randint).
    """
    sigma, d, iterations = float(params[0]), int(params[1]), int(params[2])
    n, _, h, w = x.shape
    y = torch.floor(gaussian(x, sigma).clamp(0, 1) * 255) / 255
    dy, dx = _glass_offsets(n, h, w, d, iterations, generator, x.device)
    y = _glass_sweep(y, dy, dx, d)
    return gaussian(y, sigma)
