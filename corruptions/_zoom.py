"""The reference's clipped_zoom (scipy.ndimage.zoom, order 1, centre crop) and zoom_blur's average.

``clipped_zoom`` zooms every (H, W) plane of a batch by one factor (used by snow);
``zoom_average`` is zoom_blur's (x + sum over factors of clipped_zoom(x, z)) / (len(factors) + 1).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


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


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
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


def zoom_average(x: torch.Tensor, factors: tuple[float, ...]) -> torch.Tensor:
    """(x + sum over ``factors`` of clipped_zoom(x, z)) / (len(factors) + 1) for a (n, c, H, W) batch.

    Up to 256 x 256 pixels the whole average is one precomputed sparse linear operator (about 4
    taps per factor and pixel, cached) applied with a single sparse matmul; larger images zoom
    factor by factor (two gathers and lerps each), which needs no large operator in memory.
    """
    n, c, h, w = x.shape
    if h * w <= _ZOOM_SPARSE_MAX_PIXELS:
        op = _zoom_blur_operator(h, w, factors, str(x.device))
        cols = x.reshape(n * c, h * w).t().float().contiguous()  # sparse.mm is slow on strided input
        return torch.sparse.mm(op, cols).t().reshape(n, c, h, w).to(x.dtype)
    out = x.clone()
    for z in factors:
        out += clipped_zoom(x, z)
    return out / (len(factors) + 1)
