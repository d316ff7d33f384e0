"""The train / test (or validation) splits of a run, sized and seeded from its options.

``run_splits`` is what ``fit`` trains and tests on: the dataset's splits, seeded subsets of
``train_size`` / ``test_size`` images, and with ``val_size`` a validation split held out of the
training images that takes the test split's place (choose hyperparameters on it, never on the
test set). The subsets depend on ``data_seed`` only, so runs of different seeds see the same images.
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset, Subset

from ._base import DatasetSpec
from ._factory import build_datasets

__all__ = ["seeded_subset", "run_splits"]

# Offset of the validation hold-out's permutation seed from data_seed (a stream of its own).
_VALIDATION_STREAM = 0x5EED


def seeded_subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``size`` items in index order (the whole dataset if None or larger)."""
    if size is None or size >= len(dataset):
        return dataset
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size].sort().values
    return Subset(dataset, idx.tolist())


def run_splits(
    dataset: str,
    root: str | os.PathLike | None = None,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    val_size: int | None = None,
    data_seed: int = 0,
    download: bool = False,
    image_size: int | None = None,
) -> tuple[Dataset, Dataset, DatasetSpec]:
    """``(train, test, spec)`` of clean uint8 images; with ``val_size`` the second is the validation split.

    shapes generates ``train_size + val_size`` training images; the other datasets take seeded
    subsets of their splits. ``data_seed`` also seeds imagefolder's per-sample crops.
    """
    val_size = val_size or 0
    sizes = {}
    if dataset == "shapes":  # generated: make the validation images on top of the training ones
        sizes = {"train_size": train_size + val_size if train_size else None, "test_size": test_size}
    train, test, spec = build_datasets(dataset, root, download=download, image_size=image_size,
                                       seed=data_seed, **{k: v for k, v in sizes.items() if v is not None})
    if val_size:
        if val_size >= len(train):
            raise ValueError(f"--val-size {val_size} leaves no training images (the training split has "
                             f"{len(train)}); pass a smaller --val-size")
        generator = torch.Generator().manual_seed(data_seed + _VALIDATION_STREAM)
        order = torch.randperm(len(train), generator=generator)
        held = set(order[:val_size].tolist())
        test = Subset(train, sorted(held))
        train = Subset(train, [i for i in range(len(train)) if i not in held])
    if dataset != "shapes":
        train = seeded_subset(train, train_size, data_seed)
        test = test if val_size else seeded_subset(test, test_size, data_seed)
    return train, test, spec
