"""Fast exact Poisson draws for rates on the 8-bit grid: Poisson(k / 255 * c), k = 0..255.

``torch.poisson`` samples one value at a time on the CPU (50-130 ns each here), which made
shot_noise the slowest noise corruption. An 8-bit image has only 256 distinct rates per
severity, so this samples by inversion instead: one uniform 53-bit integer u per value, and
the count is the smallest n with u < 2**53 * F_k(n), F_k the Poisson CDF of rate k / 255 * c
(float64, kept as 53-bit integers so the comparison is exact). A guide table (the CDF
inverted at 2**GUIDE_BITS evenly spaced points per rate) brackets the count between the guide
entries of u's interval, and is right at once for about 95% of the values; the rest are found
by a vectorised binary search between the two entries. The result has the Poisson
distribution up to float64 precision of the CDF (the tail above the table, < 1e-30, is merged
into its last count), like torch.poisson's own double-precision uniforms.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

GUIDE_BITS = 10  # 1024 guide points per rate
_UNIT = 1 << 53  # uniforms are integers in [0, 2**53)
# Values within this many grey levels of an integer count as on the 8-bit grid: well above
# float32 round-off of k / 255 * 255 (~2e-5), far below the spacing of 1 grey level.
GRID_TOLERANCE = 1e-4
CHUNK = 1 << 16  # values per step: the int64 temporaries (512 KB each) stay in cache


@lru_cache(maxsize=32)
def _tables(c: float) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(counts per rate K, flat integer CDFs (256 * K,), flat guide (256 * (2**GUIDE_BITS + 1),)).

    Guide entry (k, m) is the flat position of the first count whose CDF exceeds m / 2**GUIDE_BITS
    (entry 2**GUIDE_BITS: the last count, where the CDF is 1).
    """
    size = int(c + 12.0 * math.sqrt(c) + 30.0)  # P(count >= size) < 1e-30 for every rate <= c
    counts = torch.arange(size, dtype=torch.float64)
    rates = torch.arange(256, dtype=torch.float64)[:, None] * (c / 255.0)
    log_pmf = torch.xlogy(counts, rates) - rates - torch.lgamma(counts + 1.0)
    cdf = (log_pmf.exp().cumsum(1) * float(_UNIT)).round_().clamp_(max=float(_UNIT)).to(torch.int64)
    cdf[:, -1] = _UNIT
    points = (torch.arange(1 << GUIDE_BITS, dtype=torch.int64) << (53 - GUIDE_BITS)).expand(256, -1)
    guide = torch.searchsorted(cdf, points.contiguous(), right=True)  # first n with cdf[n] > point
    guide = torch.cat([guide, torch.full((256, 1), size - 1)], 1)
    guide += torch.arange(256, dtype=torch.int64)[:, None] * size  # flat positions
    return size, cdf.reshape(-1), guide.reshape(-1)


def on_grid_levels(x: torch.Tensor) -> torch.Tensor | None:
    """round(x * 255) as a flat uint8 tensor when every value of ``x`` is on the 8-bit grid, else None."""
    flat = x.reshape(-1)
    levels = torch.empty(flat.shape, dtype=torch.uint8, device=x.device)
    for start in range(0, flat.numel(), CHUNK):  # chunks keep the temporaries in cache
        scaled = flat[start : start + CHUNK].mul(255.0)
        rounded = scaled.round()
        if bool(scaled.sub_(rounded).abs_().max() > GRID_TOLERANCE):
            return None
        levels[start : start + CHUNK] = rounded
    return levels


def poisson_on_grid(levels: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson(levels / 255 * c) counts as float32 (CPU, flat) for flat uint8 CPU ``levels``.

    All uniforms are drawn first, in one call, so the result does not depend on the chunking.
    """
    size, cdf, guide = _tables(float(c))
    uniforms = torch.empty(levels.shape, dtype=torch.int64).random_(generator=generator)  # [0, 2**63)
    uniforms >>= 10  # 53 bits
    positions = torch.empty(levels.shape, dtype=torch.int64)
    unresolved = []
    for start in range(0, levels.numel(), CHUNK):
        key = _guide_key(levels[start : start + CHUNK], uniforms[start : start + CHUNK])
        pos = torch.index_select(guide, 0, key, out=positions[start : start + CHUNK])
        # pos is right unless its CDF is still <= u (about 5% of the values): search those below
        unresolved.append(torch.nonzero(cdf.index_select(0, pos) <= uniforms[start : start + CHUNK]) + start)
    active = torch.cat(unresolved).squeeze(1)
    if active.numel():
        # binary search between the guide entries of u's interval: cdf[lo - 1] <= u < cdf[hi]
        target = uniforms.index_select(0, active)
        lo = positions.index_select(0, active) + 1
        hi = guide.index_select(0, _guide_key(levels.index_select(0, active), target) + 1)
        while bool((lo < hi).any()):
            mid = (lo + hi) >> 1
            above = cdf.index_select(0, mid) > target
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid + 1)
        positions.index_copy_(0, active, lo)
    return _counts(size).index_select(0, positions)


@lru_cache(maxsize=32)
def _counts(size: int) -> torch.Tensor:
    """The count (float32) at each flat CDF position."""
    return torch.arange(size, dtype=torch.float32).repeat(256)


def _guide_key(levels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Flat guide index of (level, interval of u) for uint8 levels and 53-bit u."""
    return (u >> (53 - GUIDE_BITS)).add_(levels.to(torch.int64), alpha=(1 << GUIDE_BITS) + 1)
