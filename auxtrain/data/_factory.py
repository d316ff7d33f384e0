"""``build_datasets``: one entry point from a dataset name to (train, test, spec)."""

from __future__ import annotations

import os
from pathlib import Path

from ._base import DatasetNotFoundError, DatasetSpec
from .cifar import CIFAR10, CIFAR10_MEAN, CIFAR10_STD, CIFAR100, CIFAR100_MEAN, CIFAR100_STD
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset
from .shapes import SHAPES_MEAN, SHAPES_STD, Shapes

DATASET_NAMES = ("cifar10", "cifar100", "shapes", "imagefolder")


def _reject_extra(name: str, kw: dict) -> None:
    if kw:
        raise TypeError(f"build_datasets({name!r}) got unexpected keyword arguments: {', '.join(sorted(kw))}")


def _need_root(name: str, root) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (--data-root), the folder that holds its files")
    return Path(root).expanduser()


def build_datasets(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    **kw,
):
    """Returns ``(train_dataset, test_dataset, spec)`` for ``name`` in :data:`DATASET_NAMES`.

    Datasets yield ``(uint8 tensor (3, H, W), int label)``; only the imagefolder train split is
    augmented per item (CIFAR-style augmentation is batched: :func:`augment_batch`).

    - ``cifar10`` / ``cifar100``: ``root`` holds ``cifar-10-batches-py/`` or ``cifar-100-python/``;
      ``download=True`` fetches them; ``check_md5=True`` (kw) demands the official file checksums.
      ``image_size`` must be None or 32.
    - ``shapes``: generated from ``seed``; ``root`` and ``download`` are ignored; kw ``train_size``
      (default 10,000) and ``test_size`` (2,000); ``image_size`` default 32.
    - ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*``; ``image_size`` default
      224; ``seed`` seeds the train split's per-sample crops.
    """
    if name in ("cifar10", "cifar100"):
        check_md5 = bool(kw.pop("check_md5", False))
        _reject_extra(name, kw)
        if image_size not in (None, 32):
            raise ValueError(
                f"image_size={image_size!r}: {name} images are 32x32; pass image_size=None or 32"
            )
        root = _need_root(name, root)
        cls, mean, std = (CIFAR10, CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (
            CIFAR100, CIFAR100_MEAN, CIFAR100_STD)
        train = cls(root, train=True, download=download, check_md5=check_md5)
        test = cls(root, train=False, download=False, check_md5=False)
        spec = DatasetSpec(name, cls.num_classes, train.classes, (32, 32), mean, std)
        return train, test, spec
    if name == "shapes":
        train_size = kw.pop("train_size", 10_000)
        test_size = kw.pop("test_size", 2_000)
        _reject_extra(name, kw)
        size = 32 if image_size is None else image_size
        train = Shapes(train_size, train=True, seed=seed, image_size=size)
        test = Shapes(test_size, train=False, seed=seed, image_size=size)
        classes = tuple(Shapes.classes)
        spec = DatasetSpec(name, len(classes), classes, (size, size), SHAPES_MEAN, SHAPES_STD)
        return train, test, spec
    if name == "imagefolder":
        _reject_extra(name, kw)
        root = _need_root(name, root)
        size = 224 if image_size is None else image_size
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise DatasetNotFoundError(
                    f"imagefolder: {root / split} not found; the data root must hold train/<class>/<images> "
                    "and val/<class>/<images>"
                )
        train = ImageFolderDataset(root / "train", train=True, image_size=size, seed=seed)
        test = ImageFolderDataset(root / "val", train=False, image_size=size, classes=train.classes)
        spec = DatasetSpec(name, len(train.classes), train.classes, (size, size), IMAGENET_MEAN, IMAGENET_STD)
        return train, test, spec
    raise ValueError(f"dataset={name!r} is not known; use one of: {', '.join(DATASET_NAMES)}")
