"""shot_noise's table sampler for 8-bit images (corruptions._poisson) draws exact Poisson counts."""

from __future__ import annotations

import math

import pytest
import torch

from corruptions import corrupt
from corruptions._poisson import on_grid_levels, poisson_on_grid


def poisson_pmf(k: torch.Tensor, rate: float) -> torch.Tensor:
    k = k.double()
    return torch.exp(k * math.log(rate) - rate - torch.lgamma(k + 1))


@pytest.mark.parametrize("c, level", [(500.0, 255), (500.0, 1), (100.0, 77), (3.0, 200), (0.7, 128)])
def test_counts_follow_the_poisson_pmf(c, level):
    rate = level / 255 * c
    n = 200_000
    counts = poisson_on_grid(torch.full((n,), level, dtype=torch.uint8), c, torch.Generator().manual_seed(1))
    assert torch.equal(counts, counts.round()) and counts.min() >= 0
    values, observed = torch.unique(counts.long(), return_counts=True)
    expected = poisson_pmf(values, rate) * n
    keep = expected > 20
    # chi-square over the well-populated counts; the rest must be rare, as the pmf says
    chi2 = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * max(dof, 1)) + 10, (chi2, dof)
    rare_expected = float(expected[~keep].sum())
    assert float(observed[~keep].sum()) < rare_expected + 6 * math.sqrt(rare_expected + 1) + 5
    assert counts.double().mean().item() == pytest.approx(rate, abs=5 * math.sqrt(rate / n) + 1e-9)


def test_zero_level_gives_zero_and_levels_mix_within_a_call():
    levels = torch.tensor([0, 255] * 50_000, dtype=torch.uint8)
    counts = poisson_on_grid(levels, 50.0, torch.Generator().manual_seed(0))
    assert torch.all(counts[0::2] == 0)
    assert counts[1::2].mean().item() == pytest.approx(50.0, abs=0.2)


def test_grid_detection():
    k = torch.arange(256, dtype=torch.float32)
    assert torch.equal(on_grid_levels(k / 255), torch.arange(256, dtype=torch.uint8))
    assert on_grid_levels(torch.tensor([0.5, 0.3])) is None


def test_shot_noise_same_for_uint8_and_float_8bit_input_and_off_grid_input_still_poisson():
    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)
    a = corrupt(x8, "shot_noise", 3, generator=torch.Generator().manual_seed(5))
    b = corrupt(x8.float() / 255, "shot_noise", 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, (b * 255 + 1e-4).clamp(0, 255).to(torch.uint8))
    off = torch.full((8, 3, 32, 32), 0.3)  # not k / 255: torch.poisson path
    y = corrupt(off, "shot_noise", 1, generator=torch.Generator().manual_seed(0))
    assert y.mean().item() == pytest.approx(0.3, rel=0.01)
