"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur, batched in torch.

Formulas follow hendrycks/robustness (``make_cifar_c.py`` for the CIFAR table, ``imagenet_c``
for the ImageNet one); motion blur follows imagecorruptions' line kernel because the original
ImageMagick motion blur cannot be reproduced bit for bit. The filtering helpers here (padding
with scipy/OpenCV border rules, scipy-style Gaussian, line kernel, clipped zoom) are shared with
``corruptions.weather`` and ``corruptions.geometric``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ._registry import randint, register, uniform

# --------------------------------------------------------------------------- padding / filters


def _border_index(size: int, pad_before: int, pad_after: int, mode: str, device) -> torch.Tensor:
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


def _pad2d(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """Pad the last two axes by (ph, pw) on each side with an index-based border rule."""
    if x.dim() == 4 and mode in _TORCH_PAD and ph < x.shape[-2] and pw < x.shape[-1]:
        return F.pad(x, (pw, pw, ph, ph), mode=_TORCH_PAD[mode])  # faster; same result
    if ph:
        x = x.index_select(-2, _border_index(x.shape[-2], ph, ph, mode, x.device))
    if pw:
        x = x.index_select(-1, _border_index(x.shape[-1], pw, pw, mode, x.device))
    return x


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
    src = _border_index(size, r, r, mode, "cpu")  # padded position -> source index
    rows = torch.arange(size)[:, None] + torch.arange(len(kernel))[None, :]  # (size, K) padded
    m = torch.zeros(size, size, dtype=torch.float64)
    m.index_put_((torch.arange(size)[:, None].expand_as(rows), src[rows]),
                 torch.tensor(kernel, dtype=torch.float64).expand_as(rows).clone(), accumulate=True)
    return m


def _separable(x: torch.Tensor, kh: np.ndarray, kw: np.ndarray, mode: str) -> torch.Tensor:
    """Correlate every (H, W) plane of ``x`` (..., H, W) with kh (vertical) and kw (horizontal)."""
    h, w = x.shape[-2:]
    if kh.size > 1:
        if h <= _MATRIX_MAX_SIZE:
            x = torch.matmul(_axis_operator(h, tuple(kh.tolist()), mode).to(x.device, x.dtype), x)
        else:
            x = _filter2d(x, torch.from_numpy(kh)[:, None], mode)
    if kw.size > 1:
        if w <= _MATRIX_MAX_SIZE:
            x = torch.matmul(x, _axis_operator(w, tuple(kw.tolist()), mode).to(x.device, x.dtype).t())
        else:
            x = _filter2d(x, torch.from_numpy(kw)[None, :], mode)
    return x


def _filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every (H, W) plane of ``x`` (..., H, W) with a small 2-D ``kernel`` (odd sizes),
    padding by ``mode``; planes go to the channel axis of one depthwise conv2d (fast on CPU)."""
    shape = x.shape
    kh, kw = kernel.shape
    planes = x.reshape(1, -1, shape[-2], shape[-1])
    weight = kernel.to(x.device, x.dtype)[None, None].expand(planes.shape[1], 1, kh, kw)
    y = F.conv2d(_pad2d(planes, kh // 2, kw // 2, mode), weight, groups=planes.shape[1])
    return y.reshape(shape)


def _gaussian(x: torch.Tensor, sigma: float, mode: str = "replicate", truncate: float = 4.0):
    """skimage.filters.gaussian / scipy.ndimage.gaussian_filter over the last two axes.

    The default border ("replicate") is skimage's default 'nearest'; elastic_transform uses
    "symmetric" (scipy 'reflect').
    """
    k = _gaussian_kernel1d(sigma, truncate)
    return _separable(x, k, k, mode)


# --------------------------------------------------------------------------- gaussian_blur


@register(
    "gaussian_blur", family="blur", benchmark=False, deterministic=True,
    cifar=[(0.4,), (0.6,), (0.7,), (0.8,), (1.0,)],
    imagenet=[(1.0,), (2.0,), (3.0,), (4.0,), (6.0,)],
)
def gaussian_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of each channel (skimage ``gaussian``: truncate 4, border 'nearest')."""
    (sigma,) = params
    return _gaussian(x, sigma)


# --------------------------------------------------------------------------- defocus_blur


@lru_cache(maxsize=64)
def _disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
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


@register(
    "defocus_blur", family="blur", benchmark=True, deterministic=True,
    cifar=[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],
    imagenet=[(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)],
)
def defocus_blur_tensor(x: torch.Tensor, params: tuple, generator: torch.Generator) -> torch.Tensor:
    """Convolve with the anti-aliased disk (cv2.filter2D semantics: border REFLECT_101)."""
    radius, alias_sigma = params
    k = torch.from_numpy(_disk_kernel(float(radius), float(alias_sigma)))
    return _filter2d(x, k, "reflect101")



# --------------------------------------------------------------------------- zoom_blur


def _zoom_axis(size: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One axis of the reference's clipped_zoom: crop the centre ceil(size / z), zoom it with
    scipy.ndimage.zoom (order 1, output round(crop * z), corners aligned), trim the centre.
    Returns (i0, i1, w): output pixel i = (1 - w) * in[i0] + w * in[i1].
    """
    crop = int(np.ceil(size / float(factor)))
    top = (size - crop) // 2
    out = int(round(crop * float(factor)))
    trim = (out - size) // 2
    o = np.arange(trim, trim + size, dtype=np.float64)
    coord = o * ((crop - 1) / (out - 1)) if out > 1 else np.zeros_like(o)
    i0 = np.floor(coord).astype(np.int64)
    i0 = np.clip(i0, 0, crop - 1)
    w = coord - i0
    i1 = np.minimum(i0 + 1, crop - 1)
    return i0 + top, i1 + top, w


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """clipped_zoom of every (H, W) plane of x (..., H, W); the same zoom for the whole batch."""
    h, w = x.shape[-2:]
    for axis, size in ((-2, h), (-1, w)):
        i0, i1, wt = (torch.as_tensor(a, device=x.device) for a in _zoom_axis(size, factor))
        shape = [1] * x.dim()
        shape[axis] = size
        wt = wt.to(x.dtype).view(shape)
        x = torch.lerp(x.index_select(axis, i0), x.index_select(axis, i1), wt)
    return x


_ZOOM_SPARSE_MAX_PIXELS = 256 * 256  # the operator takes ~35 MB at 224 x 224


@lru_cache(maxsize=6)
def _zoom_blur_operator(h: int, w: int, factors: tuple[float, ...], device: str) -> torch.Tensor:
    """Sparse (H*W, H*W) matrix of the whole zoom blur, (I + sum_z Zoom_z) / (len(factors) + 1),
    output pixel by input pixel; each zoom contributes 4 bilinear taps per pixel."""
    rows, cols, vals = [np.arange(h * w)], [np.arange(h * w)], [np.ones(h * w)]
    out = np.arange(h * w).reshape(h, w)
    for z in factors:
        y0, y1, wy = _zoom_axis(h, z)
        x0, x1, wx = _zoom_axis(w, z)
        for yi, wyy in ((y0, 1 - wy), (y1, wy)):
            for xi, wxx in ((x0, 1 - wx), (x1, wx)):
                rows.append(out.reshape(-1))
                cols.append((yi[:, None] * w + xi[None, :]).reshape(-1))
                vals.append((wyy[:, None] * wxx[None, :]).reshape(-1))
    # Sum duplicate entries in numpy (torch's coalesce is slow on CPU), sorted row-major.
    key = np.concatenate(rows) * (h * w) + np.concatenate(cols)
    uniq, inverse = np.unique(key, return_inverse=True)
    val = np.bincount(inverse, weights=np.concatenate(vals)) / (len(factors) + 1)
    idx = torch.from_numpy(np.stack([uniq // (h * w), uniq % (h * w)]))
    op = torch.sparse_coo_tensor(idx, torch.from_numpy(val).float(), (h * w, h * w),
                                 check_invariants=True, is_coalesced=True)
    return op.to(device)


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
    Up to 256 x 256 pixels the whole blur is one precomputed sparse linear operator (about 4
    taps per factor and pixel, cached) applied with a single sparse matmul; larger images zoom
    factor by factor (two gathers and lerps each), which needs no large operator in memory.
    """
    end, step = params
    factors = _zoom_factors(end, step)
    n, c, h, w = x.shape
    if h * w <= _ZOOM_SPARSE_MAX_PIXELS:
        op = _zoom_blur_operator(h, w, factors, str(x.device))
        cols = x.reshape(n * c, h * w).t().float().contiguous()  # sparse.mm is slow on strided input
        return torch.sparse.mm(op, cols).t().reshape(n, c, h, w).to(x.dtype)
    out = x.clone()
    for z in factors:
        out += _clipped_zoom(x, z)
    return out / (len(factors) + 1)


# --------------------------------------------------------------------------- motion_blur


def _line_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' port of ImageMagick's motion blur, one angle (degrees) per image.

    Width 2 * radius + 1 taps weighted by a one-sided Gaussian exp(-i^2 / 2 sigma^2)
    (normalised), tap i shifting the image by (-ceil(i sin a - 0.5), -ceil(i cos a - 0.5)) with
    edge replication; taps from the first one whose shift leaves the image onwards are dropped
    (the reference's ``break``, weights not renormalised). Implemented as one gather per tap;
    taps whose normalised weight is below 1e-7 (at most ~0.001 grey level in total) are skipped.
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
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    # Reused buffers: fresh multi-MB tensors per tap cost more than the gathers themselves on CPU.
    buf = torch.empty_like(flat)
    idx = torch.empty(n, h, w, dtype=torch.long, device=x.device)
    used = int(valid.sum(1).max())  # taps before every image's break (one device sync)
    for i in range(used):
        if float(k_host[i]) < 1e-7:  # tail taps: together < 0.001 grey level, skipped for speed
            continue
        rows = (ys[None, :] - dy[:, i, None]).clamp_(0, h - 1)  # (n, h)
        cols = (xs[None, :] - dx[:, i, None]).clamp_(0, w - 1)  # (n, w)
        torch.add((rows * w)[:, :, None], cols[:, None, :], out=idx)
        torch.gather(flat, 2, idx.view(n, 1, h * w).expand(n, c, h * w), out=buf)
        out.addcmul_(buf, weight[:, i, None, None])
    return out.reshape(n, c, h, w)


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
    return _line_blur(x, int(radius), float(sigma), angle)


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
    y = torch.floor(_gaussian(x, sigma).clamp(0, 1) * 255) / 255
    dy, dx = _glass_offsets(n, h, w, d, iterations, generator, x.device)
    y = _glass_sweep(y, dy, dx, d)
    return _gaussian(y, sigma)
