"""Batched image augmentation that runs on the training device (random crop with padding, flip).

As in airbench, CIFAR-style augmentation (random crop with zero padding, horizontal flip) is done
on whole uint8 batches with a few tensor ops instead of per image in the DataLoader, so 32x32
data is never bottlenecked by Python. :func:`augment_with_views` gives a clean batch and its
corrupted views, pixel-aligned: the views corrupt the cropped and flipped clean batch (or, for
ablations, the un-augmented images before the same crop and flip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, get_args

import torch

from auxtrain.train_config import ViewOrder

VIEW_ORDERS: tuple[str, ...] = get_args(ViewOrder)  # the option's declaration owns the names


def _check_batch(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")


class Crops(NamedTuple):
    """Per-image random crop offsets ``shifts`` (2, B) in ``0..2*padding`` and flips (B,) or None."""

    shifts: torch.Tensor
    flips: torch.Tensor | None
    padding: int


def random_crops(batch_size: int, generator: torch.Generator, *, crop_padding: int = 4,
                 flip: bool = True) -> Crops:
    """Draw one crop offset per axis and one flip (p = 0.5) per image, from ``generator`` only."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"crop_padding={crop_padding!r} must be a non-negative integer (0 = no crop)")
    gdev = generator.device
    shifts = torch.randint(0, 2 * crop_padding + 1, (2, batch_size), generator=generator, device=gdev)
    flips = torch.rand(batch_size, generator=generator, device=gdev) < 0.5 if flip else None
    return Crops(shifts, flips, crop_padding)


def apply_crops(images: torch.Tensor, crops: Crops) -> torch.Tensor:
    """Crop (from the zero-padded image) and flip each image of ``images`` as drawn in ``crops``."""
    _check_batch(images)
    b, c, h, w = images.shape
    p = crops.padding
    if crops.shifts.shape[1] != b:
        raise ValueError(f"crops were drawn for {crops.shifts.shape[1]} images, got a batch of {b}")
    if p == 0 and crops.flips is None:
        return images.clone()
    shifts = crops.shifts.to(images.device)
    padded = torch.nn.functional.pad(images, (p, p, p, p)) if p else images
    pw = w + 2 * p
    rows = shifts[0].view(b, 1) + torch.arange(h, device=images.device).view(1, h)  # (B, H)
    cols = shifts[1].view(b, 1) + torch.arange(w, device=images.device).view(1, w)  # (B, W)
    if crops.flips is not None:
        cols = torch.where(crops.flips.to(images.device).view(b, 1), cols.flip(1), cols)
    index = (rows.view(b, h, 1) * pw + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, *, crop_padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop (zero padding ``crop_padding`` on each side) and horizontal flip, per image.

    ``images`` is a (B, C, H, W) batch (uint8 or float) on any device; the result has the same
    shape, dtype and device. Each image draws its own offsets in ``-crop_padding..crop_padding``
    and its own flip (p = 0.5) from ``generator`` only, on the generator's device; the draws are
    then moved to the data's device. Same generator state, same output, on any data device.
    """
    _check_batch(images)
    return apply_crops(images, random_crops(images.shape[0], generator, crop_padding=crop_padding, flip=flip))


def augment_with_views(
    images: torch.Tensor, generator: torch.Generator,
    make_views: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    *, crop_padding: int = 4, flip: bool = True, view_order: str = "crop_then_corrupt",
) -> list[torch.Tensor]:
    """``[clean, view_1, ..., view_K]``, pixel-aligned: view i is clean image i corrupted.

    The crops and flips are drawn first, from ``generator``. ``view_order="crop_then_corrupt"``
    (the default; the method corrupts the batch after the ordinary augmentation): ``make_views``
    corrupts the cropped and flipped clean batch, zero padding included, so the corruption covers
    the whole input as it covers a whole test image. ``"corrupt_then_crop"``: it corrupts the
    un-augmented images, then every view gets the clean batch's crop and flip, leaving each view
    an uncorrupted zero border (an ablation: benchmarks/results/ablations_round2_shapes.md). Both
    orders make the same random draws, so they compare pairwise.
    """
    _check_batch(images)
    if view_order not in VIEW_ORDERS:
        raise ValueError(f"view_order must be one of {', '.join(VIEW_ORDERS)}, got {view_order!r}")
    crops = random_crops(images.shape[0], generator, crop_padding=crop_padding, flip=flip)
    if view_order == "crop_then_corrupt":
        clean = apply_crops(images, crops)
        return [clean, *(make_views(clean) if make_views is not None else [])]
    views = list(make_views(images)) if make_views is not None else []
    return [apply_crops(x, crops) for x in (images, *views)]
