"""Readers of corrupted test sets: the CIFAR-C ``.npy`` layout and ImageNet-C style image folders.

A reader validates a -C set on construction and exposes each (corruption, severity) block as a
``torch.utils.data.Dataset`` (:meth:`subset`) of ``(uint8 image (3, H, W), int label)`` items, like
every auxtrain dataset, so the evaluation streams any number of blocks through a DataLoader with
flat memory.

* :class:`NpyCorruptedSet`: ``NAME.npy`` of shape (K*N, H, W, 3) uint8 per corruption, the N test
  images at severity 1, then 2, ... (K = 5 blocks; a ``meta.json`` with ``"severities": [...]``
  declares other blocks, as ``make_c.json`` of :func:`corruptions.make_c` does), plus ``labels.npy``
  (K*N,) = the test labels tiled K times. Files are memory-mapped (``np.load(mmap_mode="r")``)
  and a batch is one slice copied out of the map. When ``make_c.json`` records checksums (sets
  made by ``auxtrain make-c``), the files read are verified against them on construction (SHA-256,
  about 1 s per GB and core); other sets are checked by their .npy headers only (shape, dtype).
* :class:`FolderCorruptedSet`: ``ROOT/corruption/severity/class/image``; labels are the indices of
  the class folder names in sorted order (the torchvision ImageFolder convention, read with
  :mod:`auxtrain.data.image_folder`).

Corruption specs are resolved by :func:`corruptions.resolve_names`; a token that is not in the
vocabulary is accepted only when the set holds a file or folder of that name (a custom corruption),
so a typo is an error, never an evaluation of nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from corruptions import canonical_order, resolve_names
from corruptions.make_c import verify as verify_checksums

from .image_folder import find_classes, find_images, load_image

LABELS_FILE = "labels.npy"
CLEAN_FILE = "clean.npy"  # optional: the N clean test images (N, H, W, 3), labels = one block of labels.npy
MANIFESTS = ("make_c.json", "meta.json")  # JSON files that may declare "severities" (make_c writes the first)
_FIX_NPY = "regenerate it with `auxtrain make-c` or download the -C set again"
# How the options are spelled in error messages; ``auxtrain fit`` passes its own --eval-* names.
FLAGS = {"root": "--data-root", "corruptions": "--corruptions", "severities": "--severities"}

Sample = tuple[torch.Tensor, int]


def _flags(flags: Mapping[str, str] | None) -> dict[str, str]:
    return {**FLAGS, **(flags or {})}


def select_names(spec: str | Sequence[str] | None, found: Sequence[str], root: Path,
                 flags: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(requested names present in ``found``, in canonical order; requested names absent).

    ``spec``: None (every name found), or what :func:`corruptions.resolve_names` accepts, where a
    token outside the vocabulary must name an entry of ``found``.
    """
    what = _flags(flags)["corruptions"]
    if spec is None:
        return canonical_order(found), []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted: list[str] = []
    for item in items:
        token = item.strip() if isinstance(item, str) else item
        if token == "":
            continue
        try:
            expanded = resolve_names([token], what=what)
        except ValueError:
            if token not in found:  # neither vocabulary nor a custom file stem of this -C set
                raise
            expanded = [token]
        wanted += [n for n in expanded if n not in wanted]
    if not wanted:
        raise ValueError(f"{what}={spec!r} names no corruption; pass e.g. 'all', 'noise' or 'fog,contrast'")
    present = [n for n in wanted if n in found]
    if not present:
        raise ValueError(f"none of the requested corruptions {canonical_order(wanted)} is in {root} (it "
                         f"holds {canonical_order(found) or 'nothing'}); pass {what} with names that exist "
                         f"there")
    return canonical_order(present), canonical_order(n for n in wanted if n not in found)


class NpyBlock(Dataset):
    """``length`` images of a (K*N, H, W, 3) uint8 ``.npy`` from row ``start``, with ``labels``.

    The file is memory-mapped on first access (and not pickled: a DataLoader worker maps it itself).
    A batched fetch (``__getitems__``, used by DataLoader) of consecutive indices copies one slice.
    """

    def __init__(self, path: Path, start: int, length: int, labels: torch.Tensor) -> None:
        self.path, self.start, self.length, self.labels = Path(path), start, length, labels
        self._array: np.ndarray | None = None

    def _map(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        indices = [int(i) for i in indices]
        if any(not 0 <= i < self.length for i in indices):
            raise IndexError(f"index out of range for {len(self)} images of {self.path}")
        array = self._map()
        if indices and indices == list(range(indices[0], indices[-1] + 1)):
            rows = np.array(array[self.start + indices[0]:self.start + indices[-1] + 1])
        else:
            rows = np.stack([np.array(array[self.start + i:self.start + i + 1])[0] for i in indices])
        images = torch.from_numpy(rows).permute(0, 3, 1, 2)
        return list(zip(images.unbind(0), self.labels[indices].tolist(), strict=True))

    def release(self) -> None:
        """Unmap the file (it is mapped again on the next access), so its pages leave memory."""
        self._array = None


class ImageFiles(Dataset):
    """``(path, label)`` items decoded with Pillow into uint8 (3, H, W) tensors."""

    def __init__(self, items: Sequence[tuple[str | os.PathLike, int]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.items[index]
        try:
            return load_image(path), int(label)
        except OSError as exc:
            raise ValueError(f"{path} cannot be decoded ({exc}); replace or delete the file") from None

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """A batch; its images must share one size (a -C set is stored at one resolution)."""
        batch = [self[i] for i in indices]
        for i, (image, _) in zip(indices, batch, strict=True):
            if image.shape != batch[0][0].shape:
                raise ValueError(f"{self.items[i][0]} is {image.shape[2]}x{image.shape[1]} but "
                                 f"{self.items[indices[0]][0]} is {batch[0][0].shape[2]}x"
                                 f"{batch[0][0].shape[1]}; resize the set to one image size")
        return batch


class NpyCorruptedSet:
    """A CIFAR-C style directory, validated on construction; :meth:`subset` maps one block of a file."""

    def __init__(self, root: str | os.PathLike, names: str | Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, flags: Mapping[str, str] | None = None,
                 verify: bool = True) -> None:
        self.root = root = Path(root)
        self.flags = _flags(flags)
        labels_path = root / LABELS_FILE
        files = {p.stem: p for p in root.glob("*.npy") if p.name not in (LABELS_FILE, CLEAN_FILE)}
        if not files:
            raise ValueError(f"{root} holds no corruption files (NAME.npy); pass {self.flags['root']} the "
                             f"folder of a -C set, or build one with `auxtrain make-c` / `auxtrain eval "
                             f"--generate`")
        if not labels_path.is_file():
            raise ValueError(f"{labels_path} is missing; a -C folder needs labels.npy next to the NAME.npy "
                             f"files; {_FIX_NPY}")
        self.file_severities = self._declared_severities(root)
        labels = self._read_labels(labels_path, len(self.file_severities))
        self.num_images = labels.shape[0] // len(self.file_severities)
        self._labels = torch.from_numpy(labels[: self.num_images].astype(np.int64))
        self.names, self.missing = select_names(names, list(files), root, self.flags)
        self.files = {n: files[n] for n in self.names}
        self.severities = self._check_severities(severities)
        self.image_size: tuple[int, int] | None = None
        for name in self.names:  # validate every header before any compute
            self._open(name)
        if verify:
            self._verify([LABELS_FILE, CLEAN_FILE, *(self.files[n].name for n in self.names)])

    def _verify(self, filenames: list[str]) -> None:
        """ValueError naming the first file that does not match its checksum in make_c.json."""
        for filename, ok in verify_checksums(self.root, filenames).items():
            if not ok:
                raise ValueError(f"{self.root / filename} does not match its sha256 checksum in "
                                 f"{self.root / MANIFESTS[0]}: its bytes changed after make-c wrote it; "
                                 f"{_FIX_NPY}")

    @staticmethod
    def _declared_severities(root: Path) -> tuple[int, ...]:
        for meta in (root / m for m in MANIFESTS):
            if meta.is_file():
                try:
                    declared = json.loads(meta.read_text(encoding="utf-8")).get("severities")
                except (ValueError, AttributeError) as exc:
                    raise ValueError(f"{meta} is not valid JSON ({exc}); fix or delete it") from None
                if declared is not None:
                    return tuple(int(s) for s in declared)
        return (1, 2, 3, 4, 5)

    @staticmethod
    def _read_labels(path: Path, blocks: int) -> np.ndarray:
        try:
            labels = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is truncated or not a .npy file ({exc}); {_FIX_NPY}") from None
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.shape[0] == 0:
            raise ValueError(f"{path} must be a non-empty 1-D integer array, got {labels.dtype} "
                             f"{labels.shape}; {_FIX_NPY}")
        labels = np.array(labels)
        if labels.shape[0] % blocks:
            raise ValueError(f"{path} has {labels.shape[0]} labels, not a multiple of the {blocks} severity "
                             f"blocks; {_FIX_NPY}")
        n = labels.shape[0] // blocks
        for k in range(1, blocks):
            if not np.array_equal(labels[k * n:(k + 1) * n], labels[:n]):
                raise ValueError(f"{path}: the labels of severity block {k + 1} differ from block 1; a -C "
                                 f"set holds the same test images at every severity, so labels.npy must be "
                                 f"the test labels tiled {blocks} times; {_FIX_NPY}")
        return labels

    def _check_severities(self, severities: Sequence[int] | None) -> tuple[int, ...]:
        if severities is None:
            return self.file_severities
        bad = [s for s in severities if s not in self.file_severities]
        if bad:
            raise ValueError(f"severities {bad} are not in {self.root} (it holds "
                             f"{list(self.file_severities)}); pass {self.flags['severities']} from those")
        return tuple(severities)

    def _open(self, name: str) -> None:
        path = self.files[name]
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is truncated or not a .npy file ({exc}); {_FIX_NPY}") from None
        rows = self.num_images * len(self.file_severities)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != rows or array.shape[3] != 3:
            raise ValueError(f"{path} has {array.dtype} {tuple(array.shape)}, expected uint8 "
                             f"({rows}, H, W, 3) to match labels.npy ({rows} labels); {_FIX_NPY}")
        if self.image_size is None:
            self.image_size = (array.shape[1], array.shape[2])
        elif tuple(array.shape[1:3]) != self.image_size:
            raise ValueError(f"{path} holds {array.shape[1]}x{array.shape[2]} images, the other files "
                             f"{self.image_size[0]}x{self.image_size[1]}; {_FIX_NPY}")

    @property
    def labels(self) -> torch.Tensor:
        """The N test labels (int64), shared by every file and severity."""
        return self._labels

    def subset(self, name: str, severity: int) -> NpyBlock:
        """The N images of file ``name`` at ``severity`` as a Dataset (memory-mapped, read on demand)."""
        start = self.file_severities.index(severity) * self.num_images
        return NpyBlock(self.files[name], start, self.num_images, self._labels)

    def clean_images(self, path: str | os.PathLike) -> NpyBlock:
        """The clean test images of this set from a uint8 (N, H, W, 3) ``.npy``, labelled by labels.npy."""
        path = Path(path)
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is truncated or not a .npy file ({exc}); write it again") from None
        if array.dtype != np.uint8 or array.shape[1:] != (*self.image_size, 3) or \
                array.shape[0] != self.num_images:
            raise ValueError(f"{path} has {array.dtype} {tuple(array.shape)}, expected uint8 "
                             f"({self.num_images}, H, W, 3): the clean images of the -C set, in its order")
        return NpyBlock(path, 0, self.num_images, self._labels)


class FolderCorruptedSet:
    """An ImageNet-C style tree ``ROOT/corruption/severity/class/image``; :meth:`subset` lists one folder."""

    def __init__(self, root: str | os.PathLike, names: str | Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, flags: Mapping[str, str] | None = None) -> None:
        self.root = root = Path(root)
        self.flags = _flags(flags)
        found = {d.name: d for d in root.iterdir() if d.is_dir() and _severity_dirs(d)}
        if not found:
            raise ValueError(f"{root} holds no corruption data: neither NAME.npy + labels.npy files "
                             f"(CIFAR-C) nor corruption/severity/class/image folders (ImageNet-C); pass "
                             f"{self.flags['root']} such a folder, or build one with `auxtrain make-c` / "
                             f"`auxtrain eval --generate`")
        self.names, self.missing = select_names(names, list(found), root, self.flags)
        self.classes: list[str] | None = None
        self._items: dict[tuple[str, int], list[tuple[str, int]]] = {}
        wanted = None if severities is None else set(severities)
        for name in self.names:
            levels = _severity_dirs(found[name])
            if wanted is not None and not wanted <= set(levels):
                raise ValueError(f"{found[name]} lacks severities {sorted(wanted - set(levels))}; pass "
                                 f"{self.flags['severities']} from {sorted(levels)}")
            for s in sorted(levels):
                if wanted is None or s in wanted:
                    self._items[name, s] = self._scan(levels[s])
        self.severities = tuple(sorted({s for _, s in self._items}))

    def _scan(self, folder: Path) -> list[tuple[str, int]]:
        items, classes = scan_image_folder(folder)
        if self.classes is None:
            self.classes = classes
        elif classes != self.classes:
            raise ValueError(f"{folder} has class folders {classes[:5]}... but the first folder read has "
                             f"{self.classes[:5]}...; every corruption/severity needs the same class folders")
        return items

    def subset(self, name: str, severity: int) -> ImageFiles:
        """The images of ``name`` at ``severity`` as a Dataset (empty if that folder is absent)."""
        return ImageFiles(self._items.get((name, severity), []))


def _severity_dirs(folder: Path) -> dict[int, Path]:
    return {int(d.name): d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()}


def scan_image_folder(folder: str | os.PathLike) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, class index)`` of every image under ``folder/class/``, and the sorted class names."""
    folder = Path(folder)
    hint = "check the path (a CIFAR pickle folder needs --clean-dataset cifar10/cifar100)"
    try:
        classes = list(find_classes(folder))
    except FileNotFoundError as exc:
        raise ValueError(f"{exc}; {hint}") from None
    items = find_images(folder, tuple(classes))
    if not items:
        raise ValueError(f"{folder} holds no images in class folders (class/image.png); {hint}")
    return items, classes


def open_corrupted(root: str | os.PathLike, names: str | Sequence[str] | None = None,
                   severities: Sequence[int] | None = None,
                   flags: Mapping[str, str] | None = None) -> NpyCorruptedSet | FolderCorruptedSet:
    """The reader for ``root``: CIFAR-C layout when it holds ``.npy`` files, else an image-folder tree.

    ``names`` is a corruption spec (see :func:`select_names`), ``severities`` a subset of the set's
    severities (None: all), ``flags`` how ``root``/``corruptions``/``severities`` are named in errors.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data root {root} is not a directory; pass {_flags(flags)['root']} the folder of "
                         f"the -C set")
    if any(root.glob("*.npy")):
        return NpyCorruptedSet(root, names, severities, flags)
    return FolderCorruptedSet(root, names, severities, flags)
