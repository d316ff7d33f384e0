"""A drop-in for imagecorruptions: ``from corruptions.compat import corrupt, get_corruption_names``.

Same call as imagecorruptions 1.1.2, ``corrupt(image, severity=1, corruption_name=None,
corruption_number=-1)``: one numpy uint8 image, (H, W), (H, W, 1) or (H, W, 3), greyscale
copied to three channels; the corruption by name or by its position in
``get_corruption_names("all")`` (0-18; 15-18 are the "validation" corruptions); ImageNet-C's
severity parameters whatever the image size (imagecorruptions' tables); a uint8 (H, W, 3) array
back. Randomness comes from NumPy's global RNG, so ``np.random.seed(k)`` makes a call
reproducible as it does with imagecorruptions; ``generator=`` (keyword only) takes a
``numpy.random.Generator`` or ``torch.Generator`` instead and leaves the global RNG alone.

The one difference: the random draws are made by this package's torch kernels from a seed taken
from the global RNG, so a seed gives the same image on every call here, but not the pixels
imagecorruptions gives for that seed. Bad input raises :class:`CorruptionInputError`, which is
both an ``AttributeError`` (what imagecorruptions raises) and a ``ValueError``.

:func:`corruptions.corrupt` stays the batched, seeded API (tensors, batches, per-image severities,
every input type); this module only adapts the call.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch

from ._vocabulary import get_corruption_names as get_corruption_names
from .api import corrupt as _corrupt

__all__ = ["corrupt", "get_corruption_names", "CorruptionInputError"]


class CorruptionInputError(ValueError, AttributeError):
    """An argument imagecorruptions would also refuse (it raises AttributeError; this is both)."""


def _rgb(image: Any) -> np.ndarray:
    """``image`` as a (H, W, 3) uint8 array: greyscale (H, W) and (H, W, 1) copied to three channels."""
    if not isinstance(image, np.ndarray):
        raise CorruptionInputError(f"image must be a numpy.ndarray, got {type(image).__name__}; use "
                                   "np.asarray(pil_image), or corruptions.corrupt for tensors and batches")
    if image.dtype != np.uint8:
        raise CorruptionInputError(f"image must be uint8, got dtype {image.dtype}; use "
                                   "image.astype(np.uint8)")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] == 3:
        return image
    raise CorruptionInputError(f"image must be (height, width), (height, width, 1) or (height, width, 3), "
                               f"got shape {image.shape}; for a batch use corruptions.corrupt")


def _name(corruption_name: str | None, corruption_number: int) -> str:
    if corruption_name is not None:
        return corruption_name
    names = get_corruption_names("all")
    if corruption_number == -1:
        raise CorruptionInputError("pass corruption_name (see get_corruption_names('all')) or "
                                   f"corruption_number (0-{len(names) - 1})")
    if isinstance(corruption_number, bool) or not isinstance(corruption_number, Integral) \
            or not 0 <= corruption_number < len(names):
        raise CorruptionInputError(f"corruption_number={corruption_number!r} must be an integer from 0 to "
                                   f"{len(names) - 1} (the position in get_corruption_names('all'))")
    return names[int(corruption_number)]


def corrupt(image: np.ndarray, severity: int = 1, corruption_name: str | None = None,
            corruption_number: int = -1, *,
            generator: np.random.Generator | torch.Generator | None = None) -> np.ndarray:
    """imagecorruptions' ``corrupt``: ``image`` corrupted by one corruption at ``severity`` (1-5).

    Returns a new uint8 (H, W, 3) array (greyscale input comes back as three equal channels, as
    with imagecorruptions). Without ``generator`` the draw is seeded from NumPy's global RNG
    (advancing it), so ``np.random.seed(k)`` before the call reproduces the result.
    """
    rgb = _rgb(image)
    if isinstance(severity, bool) or not isinstance(severity, Integral) or not 1 <= severity <= 5:
        raise CorruptionInputError(f"severity={severity!r} must be an integer from 1 to 5")
    name = _name(corruption_name, corruption_number)
    if generator is None:  # the global RNG, as imagecorruptions: one draw seeds this call
        generator = torch.Generator().manual_seed(int(np.random.randint(0, 2**63 - 1, dtype=np.int64)))
    return _corrupt(rgb, name, int(severity), generator=generator, profile="imagenet")
