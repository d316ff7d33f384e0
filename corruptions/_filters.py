"""Image filters shared by the kernels: border rules, Gaussian, 2-D correlation, disk and line kernels.

Every filter works on the last two axes of a (..., H, W) float batch, planes independent, and
reproduces the reference library it stands in for (scipy.ndimage, scikit-image, OpenCV) up to
float round-off, border rule included:

- ``border_index`` / ``pad2d``: "replicate" (scipy 'nearest', OpenCV BORDER_REPLICATE),
  "reflect101" (OpenCV BORDER_REFLECT_101, torch 'reflect'), "symmetric" (scipy 'reflect',
  OpenCV BORDER_REFLECT), for any pad width;
- ``gaussian``: scipy.ndimage.gaussian_filter / skimage.filters.gaussian (separable, scipy's
  truncated weights), one matmul per axis (a depthwise conv beyond 512 px);
- ``filter2d``: cv2.filter2D-style correlation with a small 2-D kernel (one depthwise conv);
- ``disk_kernel``: defocus_blur's anti-aliased disk; ``line_blur``: the motion-blur line kernel
  (imagecorruptions' port of ImageMagick's motion blur), used by motion_blur and snow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- borders


def border_index(size: int, pad_before: int, pad_after: int, mode: str, device) -> torch.Tensor:
    """Source indices of a padded axis, for any pad width (repeats reflections if needed).

    ``mode``: "replicate" (scipy 'nearest'), "reflect101" (OpenCV BORDER_REFLECT_101, torch
    'reflect') or "symmetric" (scipy 'reflect', OpenCV BORDER_REFLECT).
    """
    i = torch.arange(-pad_before, size + pad_after, device=device)
    if mode == "replicate" or size == 1:
        return i.clamp(0, size - 1)
    if mode == "reflect101":
        period = 2 * size - 2
        i = i.remainder(period)
        return torch.where(i >= size, period - i, i)
    if mode == "symmetric":
        period = 2 * size
        i = i.remainder(period)
        return torch.where(i >= size, period - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


_TORCH_PAD = {"replicate": "replicate", "reflect101": "reflect"}


def pad2d(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """Pad the last two axes by (ph, pw) on each side with an index-based border rule."""
    if x.dim() == 4 and mode in _TORCH_PAD and ph < x.shape[-2] and pw < x.shape[-1]:
        return F.pad(x, (pw, pw, ph, ph), mode=_TORCH_PAD[mode])  # faster; same result
    if ph:
        x = x.index_select(-2, border_index(x.shape[-2], ph, ph, mode, x.device))
    if pw:
        x = x.index_select(-1, border_index(x.shape[-1], pw, pw, mode, x.device))
    return x


# --------------------------------------------------------------------------- correlation


def _gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d's weights (radius int(truncate * sigma + 0.5))."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 1e-15 or radius == 0:
        return np.ones(1)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (float(sigma) ** 2) * t**2)
    return w / w.sum()


_MATRIX_MAX_SIZE = 512  # longer axes filter with a depthwise conv instead of a (size x size) matmul


@lru_cache(maxsize=64)
def _axis_operator(size: int, kernel: tuple[float, ...], mode: str) -> torch.Tensor:
    """(size, size) float64 matrix of a 1-D correlation with ``kernel`` (odd length) and the
    border rule ``mode`` folded in: y = M @ x along one axis. Any kernel length works (large
    kernels reflect repeatedly), and a matmul is faster on CPU than a one-channel conv2d."""
    r = len(kernel) // 2
    src = border_index(size, r, r, mode, "cpu")  # padded position -> source index
    rows = torch.arange(size)[:, None] + torch.arange(len(kernel))[None, :]  # (size, K) padded
    m = torch.zeros(size, size, dtype=torch.float64)
    m.index_put_((torch.arange(size)[:, None].expand_as(rows), src[rows]),
                 torch.tensor(kernel, dtype=torch.float64).expand_as(rows).clone(), accumulate=True)
    return m


def separable(x: torch.Tensor, kh: np.ndarray, kw: np.ndarray, mode: str) -> torch.Tensor:
    """Correlate every (H, W) plane of ``x`` (..., H, W) with kh (vertical) and kw (horizontal)."""
    h, w = x.shape[-2:]
    if kh.size > 1:
        if h <= _MATRIX_MAX_SIZE:
            x = torch.matmul(_axis_operator(h, tuple(kh.tolist()), mode).to(x.device, x.dtype), x)
        else:
            x = filter2d(x, torch.from_numpy(kh)[:, None], mode)
    if kw.size > 1:
        if w <= _MATRIX_MAX_SIZE:
            x = torch.matmul(x, _axis_operator(w, tuple(kw.tolist()), mode).to(x.device, x.dtype).t())
        else:
            x = filter2d(x, torch.from_numpy(kw)[None, :], mode)
    return x


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every (H, W) plane of ``x`` (..., H, W) with a small 2-D ``kernel`` (odd sizes),
    padding by ``mode``; planes go to the channel axis of one depthwise conv2d (fast on CPU)."""
    shape = x.shape
    kh, kw = kernel.shape
    planes = x.reshape(1, -1, shape[-2], shape[-1])
    weight = kernel.to(x.device, x.dtype)[None, None].expand(planes.shape[1], 1, kh, kw)
    y = F.conv2d(pad2d(planes, kh // 2, kw // 2, mode), weight, groups=planes.shape[1])
    return y.reshape(shape)


def gaussian(x: torch.Tensor, sigma: float, mode: str = "replicate", truncate: float = 4.0):
    """skimage.filters.gaussian / scipy.ndimage.gaussian_filter over the last two axes.

    The default border ("replicate") is skimage's default 'nearest'; elastic_transform uses
    "symmetric" (scipy 'reflect').
    """
    k = _gaussian_kernel1d(sigma, truncate)
    return separable(x, k, k, mode)


# --------------------------------------------------------------------------- kernels


@lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """The reference's anti-aliased disk: 17x17 support for radius <= 8 (else 2r+1), the
    aliased disk normalised to sum 1, then OpenCV GaussianBlur (3x3, or 5x5 above radius 8,
    border REFLECT_101). Rows/columns below 1e-10 are trimmed, which changes no output grey level.
    """
    if radius <= 8:
        grid = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_sigma**2))
    g /= g.sum()
    r = ksize // 2
    size = disk.shape[0]
    idx = np.arange(-r, size + r)
    idx = np.abs(idx)
    idx = np.where(idx >= size, 2 * size - 2 - idx, idx)  # reflect101
    padded = disk[np.ix_(idx, idx)]
    rows = sum(g[k] * padded[k:k + size, :] for k in range(ksize))
    out = sum(g[k] * rows[:, k:k + size] for k in range(ksize))
    keep = np.abs(out) > 1e-10
    ys, xs = np.nonzero(keep)
    c = size // 2
    half_h = max(c - ys.min(), ys.max() - c)
    half_w = max(c - xs.min(), xs.max() - c)
    return out[c - half_h:c + half_h + 1, c - half_w:c + half_w + 1].astype(np.float32)


# Image area from which line_blur shifts each CPU image by slicing a padded copy instead of one
# batched gather per tap: the slices cost a Python step per (image, tap) but no index tensor, so
# they win from about 64 x 64 px (measured at one thread: 0.3x at 32 px, 0.9x at 48 px, 1.3x at
# 64 px, 2.4x at 96 px, 5x at 224 px); the outputs are bit-identical (the same products, summed
# in tap order).
_LINE_BLUR_SLICE_AREA = 64 * 64


def line_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' port of ImageMagick's motion blur, one angle (degrees) per image.

    Width 2 * radius + 1 taps weighted by a one-sided Gaussian exp(-i^2 / 2 sigma^2)
    (normalised), tap i shifting the image by (-ceil(i sin a - 0.5), -ceil(i cos a - 0.5)) with
    edge replication; taps from the first one whose shift leaves the image onwards are dropped
    (the reference's ``break``, weights not renormalised). Taps whose normalised weight is below
    1e-7 (at most ~0.001 grey level in total) are skipped. One gather per tap over the batch, or
    on the CPU from ``_LINE_BLUR_SLICE_AREA`` pixels on, one slice of a padded copy per image and tap.
    """
    n, c, h, w = x.shape
    width = 2 * int(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    k_host = torch.exp(-(taps**2) / (2 * float(sigma) ** 2))
    k_host = k_host / k_host.sum()
    k = k_host.to(x.device)
    a = torch.deg2rad(angle.to(x.device, torch.float64))
    ti = taps.to(x.device)[None, :]
    dy = -torch.ceil(ti * torch.sin(a)[:, None] - 0.5).long()  # (n, width)
    dx = -torch.ceil(ti * torch.cos(a)[:, None] - 0.5).long()
    valid = (dy.abs() < h) & (dx.abs() < w)
    valid = torch.cumprod(valid.long(), dim=1).bool()
    weight = (k[None, :] * valid).to(x.dtype)  # (n, width)
    live = [i for i in range(int(valid.sum(1).max())) if float(k_host[i]) >= 1e-7]  # one device sync
    if x.device.type == "cpu" and h * w >= _LINE_BLUR_SLICE_AREA:
        return _line_blur_slices(x, dy, dx, valid, weight, live)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    # Reused buffers: fresh multi-MB tensors per tap cost more than the gathers themselves on CPU.
    buf = torch.empty_like(flat)
    idx = torch.empty(n, h, w, dtype=torch.long, device=x.device)
    for i in live:
        rows = (ys[None, :] - dy[:, i, None]).clamp_(0, h - 1)  # (n, h)
        cols = (xs[None, :] - dx[:, i, None]).clamp_(0, w - 1)  # (n, w)
        torch.add((rows * w)[:, :, None], cols[:, None, :], out=idx)
        torch.gather(flat, 2, idx.view(n, 1, h * w).expand(n, c, h * w), out=buf)
        out.addcmul_(buf, weight[:, i, None, None])
    return out.reshape(n, c, h, w)


def _line_blur_slices(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, valid: torch.Tensor,
                      weight: torch.Tensor, live: list[int]) -> torch.Tensor:
    """line_blur's taps as slices of each image padded by edge replication (the clamped gather)."""
    n, _, h, w = x.shape
    pad_y = int((dy.abs() * valid).max())
    pad_x = int((dx.abs() * valid).max())
    out = torch.zeros_like(x)
    shifts_y, shifts_x, used = dy.tolist(), dx.tolist(), valid.sum(1).tolist()
    for j in range(n):
        padded = F.pad(x[j:j + 1], (pad_x, pad_x, pad_y, pad_y), mode="replicate")[0]
        for i in live:
            if i >= used[j]:
                break
            top, left = pad_y - shifts_y[j][i], pad_x - shifts_x[j][i]
            out[j].addcmul_(padded[:, top:top + h, left:left + w], weight[j, i])
    return out
