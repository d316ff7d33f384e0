"""Geometric corruptions: elastic_transform (CIFAR-C / ImageNet-C version), batched in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._filters import gaussian
from ._registry import register, uniform

_S = 32  # the CIFAR script's IMSIZE
_I = 244  # the ImageNet script's constant ("244 should have been 224")


def _affine_theta(jitter: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The reference's random affine as affine_grid's theta (n, 2, 3), align_corners=True.

    Three points around the centre move by ``jitter`` (n, 3, 2); M = cv2.getAffineTransform(
    pts1, pts2) maps (x, y) pixel coordinates forward and cv2.warpAffine samples the source at
    M^-1 (dst), in exact arithmetic as OpenCV >= 4.11 does (older OpenCV rounded the source
    coordinates to 1/32 px: at most ~2 grey levels of difference on sharp edges).
    """
    n = jitter.shape[0]
    f64 = dict(dtype=torch.float64, device=jitter.device)
    c0, c1 = float(h // 2), float(w // 2)  # np.float32(shape_size) // 2, used as (x, y) points
    s = float(min(h, w) // 3)
    pts1 = torch.tensor([[c0 + s, c1 + s], [c0 + s, c1 - s], [c0 - s, c1 - s]], **f64)
    pts2 = pts1[None] + jitter.to(torch.float64)
    a = torch.cat([pts1, torch.ones(3, 1, **f64)], 1)  # rows [x, y, 1]
    mt = torch.linalg.solve(a[None].expand(n, 3, 3), pts2)  # (n, 3, 2): pts2 = a @ mt
    last = torch.tensor([0.0, 0.0, 1.0], **f64).expand(n, 1, 3)
    minv = torch.linalg.inv(torch.cat([mt.transpose(1, 2), last], 1))  # (n, 3, 3) dst -> src
    # pixel -> normalised coordinates (align_corners=True): u = 2 x / (W - 1) - 1
    norm = torch.tensor([[2.0 / max(w - 1, 1), 0, -1], [0, 2.0 / max(h - 1, 1), -1], [0, 0, 1]], **f64)
    return (norm @ minv @ torch.linalg.inv(norm))[:, :2]


def _elastic_apply(x, params, jitter, ux, uy) -> torch.Tensor:
    """The transform for given draws: jitter (n, 3, 2) in U(-c2, c2), ux, uy (n, H, W) in U(-1, 1)."""
    alpha, sigma, _ = params
    n, c, h, w = x.shape
    # 1) random affine, bilinear, border REFLECT_101 (= reflection about the edge pixel centres)
    theta = _affine_theta(jitter, h, w).to(x.dtype)[:, :, :, None, None]  # (n, 2, 3, 1, 1)
    u = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device)[None, :]  # align_corners=True
    v = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device)[:, None]
    gx = theta[:, 0, 0] * u + theta[:, 0, 1] * v + theta[:, 0, 2]  # (n, H, W); cheaper than
    gy = theta[:, 1, 0] * u + theta[:, 1, 1] * v + theta[:, 1, 2]  # affine_grid's batched matmul
    x = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="reflection",
                      align_corners=True)
    # 2) smoothed random displacement (skimage gaussian, mode 'reflect', truncate 3) * alpha,
    # 3) sampled like scipy map_coordinates(order=1, mode='reflect'): grid_sample reflection with
    #    corners not aligned, where pixel x maps to (2 x + 1) / W - 1.
    d = gaussian(torch.stack([ux, uy], -3).to(x.dtype), float(sigma), "symmetric", 3.0)
    scale = torch.tensor([2.0 * alpha / w, 2.0 * alpha / h], dtype=x.dtype, device=x.device)
    u = (2 * torch.arange(w, dtype=x.dtype, device=x.device) + 1) / w - 1
    v = (2 * torch.arange(h, dtype=x.dtype, device=x.device) + 1) / h - 1
    base = torch.stack([u[None, :].expand(h, w), v[:, None].expand(h, w)], -1)  # (H, W, 2)
    grid = base + d.permute(0, 2, 3, 1) * scale
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@register(
    "elastic_transform", family="digital", benchmark=True,
    cifar=[(_S * 0, _S * 0, _S * 0.08), (_S * 0.05, _S * 0.2, _S * 0.07), (_S * 0.08, _S * 0.06, _S * 0.06),
           (_S * 0.1, _S * 0.04, _S * 0.05), (_S * 0.1, _S * 0.03, _S * 0.03)],
    imagenet=[(_I * 2, _I * 0.7, _I * 0.1), (_I * 2, _I * 0.08, _I * 0.2), (_I * 0.05, _I * 0.01, _I * 0.02),
              (_I * 0.07, _I * 0.01, _I * 0.02), (_I * 0.12, _I * 0.01, _I * 0.02)],
)
def elastic_transform_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Random affine warp, then a Gaussian-smoothed random displacement field.

    (alpha, sigma, affine jitter), all in pixels (the CIFAR script's 32 x (...), the ImageNet
    script's 244 x (...)). As in hendrycks/robustness: the three points (centre +- size // 3)
    move by U(-jitter, jitter), cv2.warpAffine (bilinear, BORDER_REFLECT_101); then dx, dy =
    gaussian(U(-1, 1), sigma, mode='reflect', truncate=3) * alpha and map_coordinates (order 1,
    mode 'reflect'). Both resamplings are grid_sample calls.
    """
    n, _, h, w = x.shape
    jitter = uniform(-params[2], params[2], (n, 3, 2), generator, x.device, torch.float64)
    ux = uniform(-1.0, 1.0, (n, h, w), generator, x.device)
    uy = uniform(-1.0, 1.0, (n, h, w), generator, x.device)
    return _elastic_apply(x, params, jitter, ux, uy)
