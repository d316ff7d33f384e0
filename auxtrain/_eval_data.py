"""What the evaluation runner reads and how it feeds the model (private to :mod:`auxtrain.evaluation`).

* :func:`image_set` / :func:`clean_set`: the accepted forms of a clean test set (in-memory images,
  a ``.npy`` file, a class/image folder) as one Dataset type each, checked against the -C set.
* :func:`count_correct`: top-1 correct predictions of a model per Dataset, all read through one
  DataLoader (:class:`Blocks`) whose uint8 batches cross to the device before they become float
  (a quarter of the bytes).
* :func:`test_split`: the N test images of a built-in dataset that ``fit --test-size N`` uses, for
  ``make-c``, ``--generate`` and ``--clean-dataset``.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from auxtrain.data._base import ArrayDataset
from auxtrain.data.corrupted import CLEAN_FILE, ImageFiles, NpyCorruptedSet, scan_image_folder

Clean = tuple[Any, Any] | str | os.PathLike


def to_nchw(images: Any, what: str) -> torch.Tensor:
    """A uint8 (N, 3, H, W) tensor on the host from numpy (N, H, W, 3) or a tensor (N, 3, H, W)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"{what}: numpy images must be uint8 (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{what}: tensor images must be uint8 (N, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}; convert with (x * 255).round().to(torch.uint8)")
        return images.cpu()
    raise TypeError(f"{what}: images must be a numpy array or a torch tensor, got {type(images).__name__}")


def image_set(images: Any, labels: Any, what: str) -> ArrayDataset:
    """In-memory uint8 images (numpy NHWC or tensor NCHW) and their labels as a Dataset."""
    chw = to_nchw(images, what)
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.shape != (chw.shape[0],):
        raise ValueError(f"{what} labels have shape {tuple(labels.shape)}, expected ({chw.shape[0]},) to "
                         f"match the images")
    return ArrayDataset(chw.contiguous().numpy(), labels.astype(np.int64))


def clean_set(clean: Clean | None, data) -> Dataset | None:
    """The clean test set as a Dataset, or None; see :func:`auxtrain.evaluation.corruption_errors`."""
    if clean is None:
        if isinstance(data, NpyCorruptedSet) and (data.root / CLEAN_FILE).is_file():
            clean = data.root / CLEAN_FILE
        else:
            return None
    if isinstance(clean, (str, os.PathLike)):
        path = Path(clean)
        if path.is_dir():
            items, classes = scan_image_folder(path)
            if getattr(data, "classes", None) not in (None, classes):
                raise ValueError(f"clean folder {path} has other class folders than the -C set; pass the "
                                 f"matching clean test folder")
            return ImageFiles(items)
        if path.suffix != ".npy" or not path.is_file():
            raise ValueError(f"clean={str(path)!r} must be a .npy file of uint8 (N, H, W, 3) images or a "
                             f"class/image folder")
        if not isinstance(data, NpyCorruptedSet):
            raise ValueError(f"clean={str(path)!r}: a .npy of clean images takes its labels from a CIFAR-C "
                             f"labels.npy; with an image-folder -C set pass a clean class/image folder")
        return data.clean_images(path)
    if not (isinstance(clean, (tuple, list)) and len(clean) == 2):
        raise TypeError(f"clean must be (images, labels), a .npy path or a folder, got "
                        f"{type(clean).__name__}")
    dataset = image_set(clean[0], clean[1], "clean")
    if isinstance(data, NpyCorruptedSet) and len(dataset) == data.num_images and \
            not np.array_equal(dataset.labels, data.labels.numpy()):
        raise ValueError(f"the clean labels differ from {data.root / 'labels.npy'}; the clean set must be "
                         f"the test set the -C files were made from, in the same order")
    return dataset


class Blocks(Dataset):
    """Datasets end to end, read block by block: one DataLoader (and its workers) for a whole -C set.

    A batch from :meth:`batches` never spans two blocks, and when reading moves on to the next
    block the previous one is released (a memory-mapped file is unmapped), so memory stays flat
    however many blocks there are.
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        self.offsets = [0]
        for d in self.datasets:
            self.offsets.append(self.offsets[-1] + len(d))
        self._current = -1

    def __len__(self) -> int:
        return self.offsets[-1]

    def batches(self, batch_size: int) -> list[tuple[int, list[int]]]:
        """(block, global indices) of every batch, in reading order."""
        return [(b, list(range(self.offsets[b] + i, self.offsets[b] + min(i + batch_size, len(d)))))
                for b, d in enumerate(self.datasets) for i in range(0, len(d), batch_size)]

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list:
        block = bisect.bisect_right(self.offsets, indices[0]) - 1
        if block != self._current:
            previous = self.datasets[self._current] if self._current >= 0 else None
            if hasattr(previous, "release"):
                previous.release()
            self._current = block
        dataset, start = self.datasets[block], self.offsets[block]
        local = [i - start for i in indices]
        if hasattr(dataset, "__getitems__"):
            return dataset.__getitems__(local)
        return [dataset[i] for i in local]


def _as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, H, W) on the host -> float in [0, 1] on ``device``; the uint8 bytes cross the bus."""
    return images.to(device, non_blocking=True).float().div_(255)


@torch.inference_mode()
def count_correct(model: nn.Module, datasets: Sequence[Dataset], batch_size: int, device: torch.device,
                  workers: int = 0, on_block: Callable[[int], None] | None = None) -> list[tuple[int, int]]:
    """(correct top-1 predictions, images) of ``model`` (eval mode, on ``device``) per dataset.

    One DataLoader reads all ``datasets`` in order (``workers`` processes decode, 0 = in this
    process); ``on_block(k)`` is called once block k is done (for a progress bar).
    """
    blocks = Blocks(datasets)
    plan = blocks.batches(batch_size)
    correct = torch.zeros(len(datasets), dtype=torch.int64, device=device)
    seen = [0] * len(datasets)
    done = 0
    if plan:
        loader = DataLoader(blocks, batch_sampler=[indices for _, indices in plan], num_workers=workers,
                            pin_memory=device.type == "cuda")
        for (block, _), (images, labels) in zip(plan, loader, strict=True):
            for finished in range(done, block):
                if on_block is not None:
                    on_block(finished)
            done = block
            logits = model(_as_float(images, device))
            correct[block] += (logits.argmax(1) == labels.to(device, non_blocking=True)).sum()
            seen[block] += labels.shape[0]
        last = blocks.datasets[done]
        if hasattr(last, "release"):
            last.release()
    for finished in range(done, len(datasets)):
        if on_block is not None:
            on_block(finished)
    return list(zip(correct.tolist(), seen, strict=True))


def test_split(name: str, root: str | None, data_seed: int, size: int | None):
    """(uint8 images (N, 3, H, W), int64 labels (N,), spec) of the test split ``fit`` uses.

    The same images as ``fit --dataset NAME --test-size SIZE --data-seed DATA_SEED``: the split of
    :func:`auxtrain.data.run_splits` (shapes: generated from ``data_seed``, ``size`` None = 2,000;
    cifar: a seeded subset of ``size`` images in index order, None = all), in index order.
    """
    from auxtrain.data import run_splits
    from auxtrain.eval_config import CLEAN_DATASETS

    if name not in CLEAN_DATASETS:
        raise ValueError(f"dataset {name!r} is not supported here; use {', '.join(CLEAN_DATASETS)}")
    # train_size 16: only the test split is used (shapes then generates only what is needed)
    _, test_ds, spec = run_splits(name, root, train_size=16, test_size=size, data_seed=data_seed)
    base, indices = test_ds, list(range(len(test_ds)))
    if isinstance(test_ds, Subset):
        base, indices = test_ds.dataset, [int(i) for i in test_ds.indices]
    images, labels = base.get_batch(indices)  # the datasets of run_splits are array-backed
    return images, labels.to(torch.int64), spec
