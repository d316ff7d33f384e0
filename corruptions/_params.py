"""Severity profiles: which parameter tuple a corruption uses at a given image size.

Each corruption has two tables (see ``_registry``): ``cifar`` (CIFAR-C, tuned for 32 px) and
``imagenet`` (ImageNet-C, tuned for 224 px). The profile picks between them:

- ``"cifar"``: always the CIFAR-C table; ``"imagenet"``: always the ImageNet-C table.
- ``"auto"``: the CIFAR-C table when the image size is <= 32 px, the ImageNet-C table when it
  is >= 224 px, and an interpolation in between.

The image size is ``sqrt(H * W)`` (the side of the square with the same area), so square images
use their side and non-square images their geometric-mean side. The interpolation weight is
linear in log size, ``t = log(size / 32) / log(224 / 32)`` (0 at 32 px, 1 at 224 px, 0.5 at
about 85 px), because image sizes, like most corruption parameters, are scale-like: a blur radius
or noise level that suits 64 px lies "halfway" between 32 and 128 px in ratio, not in difference.

Each parameter position is interpolated on its own, by its mode (``register(interpolation=...)``):

- ``"auto"`` (the default): geometric (linear in log space, ``a**(1-t) * b**t``) when both table
  values are positive (radii, sigmas, noise levels, JPEG quality, Poisson photon counts, blend
  weights), linear otherwise (zero or negative values, e.g. an additive offset of 0);
- ``"linear"``: ``(1 - t) * a + t * b``; ``"log"``: geometric (both values must be positive);
- ``"nearest"``: the CIFAR-C value while t < 0.5, then the ImageNet-C value (categorical values
  such as spatter's water/mud mode). Values that are not numbers always use "nearest".

Equal table values stay exactly equal, integer positions (``integer_params``) are rounded half up
after interpolation, and at t = 0 and t = 1 the table values are returned untouched.
"""

from __future__ import annotations

import math
from functools import lru_cache
from numbers import Real

from ._registry import CorruptionSpec, get_spec

CIFAR_SIZE = 32
IMAGENET_SIZE = 224
PROFILES = ("auto", "cifar", "imagenet")


def check_profile(profile: str) -> str:
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a severity profile; use one of {PROFILES}")
    return profile


def image_size(height: int, width: int) -> float:
    """The size the profile interpolates on: the geometric-mean side sqrt(H * W)."""
    return math.sqrt(height * width)


def blend_weight(height: int, width: int, profile: str = "auto") -> float:
    """Weight t of the ImageNet-C table (0 = CIFAR-C table, 1 = ImageNet-C table)."""
    check_profile(profile)
    if profile == "cifar":
        return 0.0
    if profile == "imagenet":
        return 1.0
    size = image_size(height, width)
    if size <= CIFAR_SIZE:
        return 0.0
    if size >= IMAGENET_SIZE:
        return 1.0
    return math.log(size / CIFAR_SIZE) / math.log(IMAGENET_SIZE / CIFAR_SIZE)


def _interpolate(a, b, t: float, mode: str):
    if a == b:
        return a
    numeric = isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool)
    if not numeric or mode == "nearest":
        return a if t < 0.5 else b
    if mode == "log" or (mode == "auto" and a > 0 and b > 0):
        return math.exp((1.0 - t) * math.log(a) + t * math.log(b))
    return (1.0 - t) * a + t * b


def interpolate_params(spec: CorruptionSpec, severity: int, t: float) -> tuple:
    """The parameter tuple of ``spec`` at ``severity`` (1..5) for ImageNet-C weight ``t``."""
    low, high = spec.cifar[severity - 1], spec.imagenet[severity - 1]
    if t <= 0.0:
        return low
    if t >= 1.0:
        return high
    modes = spec.interpolation or ("auto",) * len(low)
    out = []
    for i, (a, b) in enumerate(zip(low, high, strict=True)):
        value = _interpolate(a, b, t, modes[i])
        if i in spec.integer_params and isinstance(value, Real):
            value = int(math.floor(value + 0.5))
        out.append(value)
    return tuple(out)


@lru_cache(maxsize=4096)
def resolve_params(name: str, severity: int, height: int, width: int, profile: str = "auto") -> tuple:
    """The parameter tuple ``corrupt`` passes to ``name``'s kernel for an H x W image."""
    spec = get_spec(name)
    return interpolate_params(spec, severity, blend_weight(height, width, profile))
