"""Shared pieces of the dataset readers: the dataset description and the in-memory dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset's files are missing; the message says which files belong where.

    Both a FileNotFoundError (what it is) and a ValueError (a bad ``root`` / ``--data-root``), so
    callers that catch either see it.
    """


@dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset.

    ``mean`` and ``std`` are per RGB channel on the 0..1 scale, for :func:`auxtrain.data.normalize`;
    ``image_size`` is (H, W) of the images the datasets yield.
    """

    name: str
    num_classes: int
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ArrayDataset(Dataset):
    """A labelled image set held in memory, yielding ``(uint8 tensor (3, H, W), int label)``.

    The pixels are stored once, channel-first and contiguous, so an item is a view (no copy) and a
    batch is one gather (:meth:`get_batch`, also used by DataLoader through ``__getitems__``).
    ``images`` is the same memory seen as (N, H, W, 3) numpy uint8, ``labels`` is int64 numpy.
    Items are not augmented: training augmentation runs on whole batches (``augment_batch``).
    """

    def __init__(self, images_chw: np.ndarray, labels: Sequence[int] | np.ndarray) -> None:
        images_chw = np.ascontiguousarray(images_chw)
        if images_chw.dtype != np.uint8 or images_chw.ndim != 4 or images_chw.shape[1] != 3:
            raise ValueError(
                f"images_chw must be uint8 of shape (N, 3, H, W), got {images_chw.dtype} "
                f"{tuple(images_chw.shape)}"
            )
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (images_chw.shape[0],):
            raise ValueError(
                f"labels must have shape ({images_chw.shape[0]},) to match the images, "
                f"got {tuple(labels.shape)}"
            )
        if not images_chw.flags.writeable:  # torch.from_numpy warns on read-only memory
            images_chw = images_chw.copy()
        self._chw = torch.from_numpy(images_chw)
        self._labels_t = torch.from_numpy(labels)
        self.labels = labels
        self.images = images_chw.transpose(0, 2, 3, 1)  # (N, H, W, 3) view of the same memory

    def __len__(self) -> int:
        return self._chw.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._chw[index], int(self.labels[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched fetch used by DataLoader's default collation: one gather instead of N lookups."""
        images, labels = self.get_batch(indices)
        return list(zip(images.unbind(0), labels.tolist(), strict=True))

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(uint8 images (B, 3, H, W), int64 labels (B,))`` for ``indices`` (a copy)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self._chw.index_select(0, index), self._labels_t.index_select(0, index)

    def __repr__(self) -> str:
        n, _, h, w = self._chw.shape
        return f"{type(self).__name__}(num_images={n}, image_size=({h}, {w}))"
