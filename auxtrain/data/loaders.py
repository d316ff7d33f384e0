"""DataLoaders whose order depends only on (seed, epoch), so a resumed epoch replays exactly.

``make_loader`` builds a fresh loader per epoch with a generator seeded from (seed, epoch).
Array-backed datasets (anything with ``get_batch(indices)``, also inside ``Subset``) are fetched
one whole batch at a time (one gather per batch, no per-image collation); other datasets use the
default collation.
Either way a batch is ``(uint8 images (B, 3, H, W), int64 labels (B,))``.
"""

from __future__ import annotations

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
)

from auxtrain.seeding import mix_seed


def epoch_seed(seed: int, epoch: int) -> int:
    """The data-order seed of (seed, epoch); different epochs give unrelated streams."""
    return mix_seed(seed, epoch, 0x10AD)


def _unwrap(dataset: Dataset) -> tuple[Dataset, list[int] | None]:
    """The dataset under (possibly nested) ``Subset`` wrappers and the index map into it."""
    indices = None
    while isinstance(dataset, Subset):
        mapped = list(dataset.indices)
        indices = mapped if indices is None else [mapped[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


class _BatchFetcher(Dataset):
    """Wraps an array-backed dataset (or a Subset of one) so that one DataLoader item is one batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._base, self._indices = _unwrap(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):  # classes, labels, images... of the wrapped dataset
        if name == "dataset":  # not set yet (e.g. while unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._indices is not None:
            indices = [self._indices[i] for i in indices]
        return self._base.get_batch(indices)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` for one epoch.

    The order is a function of (``seed``, ``epoch``) only: build a new loader each epoch. A
    ``sampler`` (e.g. ``DistributedSampler``) replaces the built-in one and does its own
    shuffling; its ``set_epoch(epoch)`` is called here, as is the dataset's ``set_epoch`` if it
    (or the dataset inside a ``Subset``) has one (per-sample augmentation of image folders).
    ``workers`` > 0 uses worker processes whose seeds also derive from (seed, epoch).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r} must be a non-negative integer")
    base, _ = _unwrap(dataset)
    if hasattr(base, "set_epoch"):
        base.set_epoch(epoch)
    loader_generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    if sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch) + 1))
    else:
        sampler = SequentialSampler(dataset)
    common = dict(num_workers=workers, pin_memory=pin_memory, generator=loader_generator,
                  persistent_workers=False)
    if hasattr(base, "get_batch"):
        batches = BatchSampler(sampler, batch_size, drop_last)
        return DataLoader(_BatchFetcher(dataset), batch_size=None, sampler=batches, **common)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
