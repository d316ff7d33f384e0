"""PIL's 8-bit resampling, bit-exact on integer batches: BOX downscaling and the pixelate round trip.

``pil_pixelate`` is ``Image.resize((w, h), BOX)`` then ``resize((W, H), BOX or NEAREST)`` for a
whole (..., H, W) uint8 batch: the same fixed-point arithmetic (22 precision bits, rounding, the
horizontal pass first) and the same source pixels, ties included.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=64)
def _pil_box_windows(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, hi, weight) per output pixel of PIL's ``Image.BOX`` downscaling along one axis.

    PIL samples the box at input pixel centres, so output pixel i averages the contiguous inputs
    lo[i] .. hi[i] - 1 with equal weights 1 / k, which it stores in 8-bit mode as the fixed-point
    integer weight[i] = floor(0.5 + 2**22 / k) (22 precision bits).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    lo, hi, weight = [], [], []
    for i in range(out_size):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        pos = (np.arange(xmin, xmax) - center + 0.5) / filterscale
        inside = np.flatnonzero((pos > -0.5) & (pos <= 0.5)) + xmin
        lo.append(inside[0])
        hi.append(inside[-1] + 1)
        weight.append(int(0.5 + (1 << 22) / len(inside)))
    as_tensor = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return as_tensor(lo), as_tensor(hi), as_tensor(weight)


def _box_rows(u: torch.Tensor, out_size: int) -> torch.Tensor:
    """PIL BOX downscaling of uint8 pixels along dim -2, with PIL's fixed-point mean (uint8 out).

    Window sums (int16: at most ceil(in / out) + 1 rows of <= 255) are built row by row: the
    first row of every window, then the second row of the windows that have one, ... Rows
    (dim -2) because gathers there copy contiguous memory; along the last dim they are several
    times slower, so callers transpose instead.
    """
    in_size = u.shape[-2]
    if in_size == out_size:
        return u
    lo, hi, weight = _pil_box_windows(in_size, out_size)
    sums = u.index_select(-2, lo.to(u.device)).to(torch.int16)
    for j in range(1, int((hi - lo).max())):
        windows = torch.nonzero(lo + j < hi).squeeze(1)
        rows = u.index_select(-2, (lo[windows] + j).to(u.device)).to(torch.int16)
        sums.index_add_(-2, windows.to(u.device), rows)
    # sum * weight <= 255 * 2**22 (+ rounding): fits in int32; the result fits in uint8
    fixed = sums.to(torch.int32).mul_(weight.to(torch.int32).to(u.device)[:, None]).add_(1 << 21)
    return fixed.bitwise_right_shift_(22).to(torch.uint8)


def _upscale_indices(in_size: int, out_size: int, incremental: bool) -> torch.Tensor:
    """Source index of each output pixel when PIL upscales ``in_size`` -> ``out_size``.

    ``Image.BOX`` computes floor((i + 0.5) * in / out) in double precision; ``Image.NEAREST``
    reaches the same positions by adding in / out step by step (an affine transform), whose
    round-off sends a few exact ties (e.g. 28 -> 70 px) to the other side.
    """
    scale = in_size / out_size
    i = np.arange(out_size)
    if incremental:
        steps = np.full(out_size, scale)
        steps[0] = scale * 0.5
        index = np.floor(np.cumsum(steps)).astype(np.int64)  # sequential float64 sums, like PIL
    else:
        index = np.floor((i + 0.5) * scale).astype(np.int64)
    return torch.from_numpy(np.clip(index, 0, in_size - 1))


def pil_pixelate(u: torch.Tensor, small_h: int, small_w: int, incremental: bool) -> torch.Tensor:
    """PIL ``resize((small_w, small_h), BOX)`` then ``resize((W, H), BOX or NEAREST)``, bit-exact.

    ``u`` is a uint8 (..., H, W) batch. PIL's BOX pass runs horizontally first, rounding to
    uint8, then vertically. Upscaling only copies pixels, so it commutes with the other axis'
    pass: horizontal down + up run on the transposed image (as row operations), then vertical
    down + up. For strong down-scaling (below 0.6) widening the small image along its last
    dim is cheaper than transposing the full-size one back (measured), so both upscales run
    last instead.
    """
    height, width = u.shape[-2:]
    cols = _upscale_indices(small_w, width, incremental).to(u.device)
    rows = _upscale_indices(small_h, height, incremental).to(u.device)
    t = _box_rows(u.transpose(-1, -2).contiguous(), small_w)  # (..., small_w, H)
    if 5 * small_w >= 3 * width:
        t = t.index_select(-2, cols).transpose(-1, -2).contiguous()  # (..., H, W)
        return _box_rows(t, small_h).index_select(-2, rows)
    v = _box_rows(t.transpose(-1, -2).contiguous(), small_h)  # (..., small_h, small_w)
    return v.index_select(-1, cols).index_select(-2, rows)
