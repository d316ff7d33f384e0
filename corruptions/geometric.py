"""Geometric corruptions: elastic_transform (CIFAR-C / ImageNet-C version), batched in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._registry import register
from .blur import _gaussian, _uniform

_S = 32  # the CIFAR script's IMSIZE
_I = 244  # the ImageNet script's constant ("244 should have been 224")


def _affine_source(jitter: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Source (x, y) pixel coordinates, shape (n, H, W, 2), of cv2.warpAffine with the random
    affine of the reference: three points around the centre moved by ``jitter`` (n, 3, 2),
    M = cv2.getAffineTransform(pts1, pts2), dst(p) = src(M^-1 p), in exact arithmetic as
    OpenCV >= 4.11 does (older OpenCV rounded source coordinates to 1/32 px: at most ~2 grey
    levels of difference on sharp edges)."""
    n = jitter.shape[0]
    dev = jitter.device
    c0, c1 = float(h // 2), float(w // 2)  # np.float32(shape_size) // 2, used as (x, y) points
    s = float(min(h, w) // 3)
    pts1 = torch.tensor([[c0 + s, c1 + s], [c0 + s, c1 - s], [c0 - s, c1 - s]],
                        dtype=torch.float64, device=dev)
    pts2 = pts1[None] + jitter.to(torch.float64)
    ones = torch.ones(3, 1, dtype=torch.float64, device=dev)
    a = torch.cat([pts1, ones], 1)  # (3, 3): rows [x, y, 1]
    mt = torch.linalg.solve(a[None].expand(n, 3, 3), pts2)  # (n, 3, 2): pts2 = a @ mt
    m = torch.cat([mt.transpose(1, 2), torch.tensor([0.0, 0, 1], dtype=torch.float64, device=dev)
                   .expand(n, 1, 3)], 1)  # (n, 3, 3) forward map
    minv = torch.linalg.inv(m)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=dev),
                            torch.arange(w, dtype=torch.float64, device=dev), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)  # (HW, 3)
    return torch.einsum("nij,pj->npi", minv[:, :2], pts).reshape(n, h, w, 2)


def _to_grid(coords: torch.Tensor, h: int, w: int, align_corners: bool) -> torch.Tensor:
    """Pixel (x, y) coordinates -> grid_sample's normalised coordinates."""
    x, y = coords[..., 0], coords[..., 1]
    if align_corners:
        gx, gy = 2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1
    else:
        gx, gy = (2 * x + 1) / w - 1, (2 * y + 1) / h - 1
    return torch.stack([gx, gy], -1)


def _elastic_apply(x, params, jitter, ux, uy) -> torch.Tensor:
    """The transform for given draws: jitter (n, 3, 2) in U(-c2, c2), ux, uy (n, H, W) in U(-1, 1)."""
    alpha, sigma, _ = params
    n, c, h, w = x.shape
    # 1) random affine, bilinear, border REFLECT_101 (= reflection about the edge pixel centres)
    src = _affine_source(jitter, h, w)
    grid = _to_grid(src, h, w, align_corners=True).to(x.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    # 2) smoothed random displacement (skimage gaussian, mode 'reflect', truncate 3) * alpha
    d = _gaussian(torch.stack([ux, uy], 1).to(torch.float64), float(sigma), "symmetric", 3.0) * alpha
    d = d.to(torch.float32).to(torch.float64)  # the reference casts the fields to float32
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=x.device),
                            torch.arange(w, dtype=torch.float64, device=x.device), indexing="ij")
    coords = torch.stack([xs + d[:, 0], ys + d[:, 1]], -1)
    # 3) scipy map_coordinates(order=1, mode='reflect') = grid_sample reflection, corners not aligned
    grid = _to_grid(coords, h, w, align_corners=False).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@register(
    "elastic_transform", family="digital", benchmark=True,
    cifar=[(_S * 0, _S * 0, _S * 0.08), (_S * 0.05, _S * 0.2, _S * 0.07), (_S * 0.08, _S * 0.06, _S * 0.06),
           (_S * 0.1, _S * 0.04, _S * 0.05), (_S * 0.1, _S * 0.03, _S * 0.03)],
    imagenet=[(_I * 2, _I * 0.7, _I * 0.1), (_I * 2, _I * 0.08, _I * 0.2), (_I * 0.05, _I * 0.01, _I * 0.02),
              (_I * 0.07, _I * 0.01, _I * 0.02), (_I * 0.12, _I * 0.01, _I * 0.02)],
)
def elastic_transform(x: torch.Tensor, params: tuple, generator=None) -> torch.Tensor:
    """Random affine warp, then a Gaussian-smoothed random displacement field.

    (alpha, sigma, affine jitter), all in pixels (the CIFAR script's 32 x (...), the ImageNet
    script's 244 x (...)). As in hendrycks/robustness: the three points (centre +- size // 3)
    move by U(-jitter, jitter), cv2.warpAffine (bilinear, BORDER_REFLECT_101); then dx, dy =
    gaussian(U(-1, 1), sigma, mode='reflect', truncate=3) * alpha and map_coordinates (order 1,
    mode 'reflect'). Both resamplings are grid_sample calls.
    """
    n, _, h, w = x.shape
    jitter = _uniform(generator, (n, 3, 2), -params[2], params[2], x.device, torch.float64)
    ux = _uniform(generator, (n, h, w), -1.0, 1.0, x.device, torch.float64)
    uy = _uniform(generator, (n, h, w), -1.0, 1.0, x.device, torch.float64)
    return _elastic_apply(x, params, jitter, ux, uy)
