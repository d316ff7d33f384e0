"""Batched image augmentation that runs on the training device (random crop with padding, flip).

As in airbench, CIFAR-style augmentation (random crop with zero padding, horizontal flip) is done
on whole uint8 batches with a few tensor ops instead of per image in the DataLoader, so 32x32
data is never bottlenecked by Python.
"""

from __future__ import annotations

import torch


def _check_batch(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")


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
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"crop_padding={crop_padding!r} must be a non-negative integer (0 = no crop)")
    b, c, h, w = images.shape
    p = crop_padding
    gdev = generator.device
    shifts = torch.randint(0, 2 * p + 1, (2, b), generator=generator, device=gdev).to(images.device)
    flips = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(images.device) if flip else None
    if p == 0 and flips is None:
        return images.clone()
    padded = torch.nn.functional.pad(images, (p, p, p, p)) if p else images
    pw = w + 2 * p
    rows = shifts[0].view(b, 1) + torch.arange(h, device=images.device).view(1, h)  # (B, H)
    cols = shifts[1].view(b, 1) + torch.arange(w, device=images.device).view(1, w)  # (B, W)
    if flips is not None:
        cols = torch.where(flips.view(b, 1), cols.flip(1), cols)
    index = (rows.view(b, h, 1) * pw + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)
