"""Readers of corrupted test sets: the CIFAR-C ``.npy`` layout and ImageNet-C style image folders.

Both yield batches of ``(uint8 images (B, H, W, 3), int64 labels (B,))`` per (corruption, severity),
so evaluation streams any number of files with flat memory.

* :class:`NpyCorruptedSet`: ``NAME.npy`` of shape (K*N, H, W, 3) uint8 per corruption, the N test
  images at severity 1, then 2, ... (K = 5 blocks; a ``meta.json`` with ``"severities": [...]``
  declares other blocks, as ``make_c.json`` of :func:`corruptions.make_c` does), plus ``labels.npy``
  (K*N,) = the test labels tiled K times. Files are memory-mapped (``np.load(mmap_mode="r")``)
  and only one batch at a time is copied out.
* :class:`FolderCorruptedSet`: ``ROOT/corruption/severity/class/image``; labels are the indices of
  the class folder names in sorted order (the torchvision ImageFolder convention).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from corruptions import canonical_order

LABELS_FILE = "labels.npy"
CLEAN_FILE = "clean.npy"  # optional: the N clean test images (N, H, W, 3), labels = one block of labels.npy
MANIFESTS = ("make_c.json", "meta.json")  # JSON files that may declare "severities" (make_c writes the first)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
_FIX_NPY = "regenerate it with `auxtrain make-c` or download the -C set again"

Batch = tuple[torch.Tensor, torch.Tensor]


def _select(found: Sequence[str], wanted: Sequence[str] | None, root: Path) -> tuple[list[str], list[str]]:
    """(present names in canonical order, requested-but-absent names)."""
    if wanted is None:
        return canonical_order(found), []
    present = [n for n in wanted if n in found]
    missing = [n for n in wanted if n not in found]
    if not present:
        raise ValueError(f"none of the requested corruptions {list(wanted)} is in {root} (it holds "
                         f"{canonical_order(found) or 'nothing'}); pass --corruptions with names that exist "
                         "there")
    return canonical_order(present), missing


class NpyCorruptedSet:
    """A CIFAR-C style directory, validated on construction, streamed batch by batch from memory maps."""

    def __init__(self, root: str | os.PathLike, names: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None) -> None:
        self.root = root = Path(root)
        labels_path = root / LABELS_FILE
        files = {p.stem: p for p in root.glob("*.npy") if p.name not in (LABELS_FILE, CLEAN_FILE)}
        if not files:
            raise ValueError(f"{root} holds no corruption files (NAME.npy); pass --data-root the folder of a "
                             f"-C set, or build one with `auxtrain make-c` / `auxtrain eval --generate`")
        if not labels_path.is_file():
            raise ValueError(f"{labels_path} is missing; a -C folder needs labels.npy next to the NAME.npy "
                             f"files; {_FIX_NPY}")
        self.file_severities = self._declared_severities(root)
        labels = self._read_labels(labels_path, len(self.file_severities))
        self.num_images = labels.shape[0] // len(self.file_severities)
        self._labels = torch.from_numpy(labels[: self.num_images].astype(np.int64))
        self.names, self.missing = _select(list(files), names, root)
        self.files = {n: files[n] for n in self.names}
        self.severities = self._check_severities(severities)
        self.image_size: tuple[int, int] | None = None
        for name in self.names:  # validate every header before any compute
            self._open(name)

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
                             f"{list(self.file_severities)}); pass --severities from those")
        return tuple(severities)

    def _open(self, name: str) -> np.ndarray:
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
        return array

    @property
    def labels(self) -> torch.Tensor:
        """The N test labels (int64), shared by every file and severity."""
        return self._labels

    def num_batches(self, batch_size: int) -> int:
        return -(-self.num_images // batch_size)

    def batches(self, name: str, severity: int, batch_size: int) -> Iterator[Batch]:
        """Batches of file ``name`` at ``severity``: copies of memory-mapped slices, one at a time."""
        array = self._open(name)
        start = self.file_severities.index(severity) * self.num_images
        for i in range(0, self.num_images, batch_size):
            j = min(i + batch_size, self.num_images)
            yield torch.from_numpy(np.array(array[start + i:start + j])), self._labels[i:j]
        del array  # unmaps the file: memory stays flat across files


class FolderCorruptedSet:
    """An ImageNet-C style tree ``ROOT/corruption/severity/class/image`` (decoded with PIL, threads)."""

    def __init__(self, root: str | os.PathLike, names: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, workers: int = 4) -> None:
        self.root = root = Path(root)
        found = {d.name: d for d in root.iterdir() if d.is_dir() and _severity_dirs(d)}
        if not found:
            raise ValueError(f"{root} holds no corruption data: neither NAME.npy + labels.npy files "
                             f"(CIFAR-C) nor corruption/severity/class/image folders (ImageNet-C); pass "
                             f"--data-root such a folder, or build one with `auxtrain make-c` / "
                             f"`auxtrain eval --generate`")
        self.names, self.missing = _select(list(found), names, root)
        self.workers = workers
        self.classes: list[str] | None = None
        self._items: dict[tuple[str, int], list[tuple[Path, int]]] = {}
        wanted = None if severities is None else set(severities)
        for name in self.names:
            levels = _severity_dirs(found[name])
            if wanted is not None and not wanted <= set(levels):
                raise ValueError(f"{found[name]} lacks severities {sorted(wanted - set(levels))}; pass "
                                 f"--severities from {sorted(levels)}")
            for s in sorted(levels):
                if wanted is None or s in wanted:
                    self._items[name, s] = self._scan(levels[s])
        self.severities = tuple(sorted({s for _, s in self._items}))

    def _scan(self, folder: Path) -> list[tuple[Path, int]]:
        items, classes = scan_image_folder(folder)
        if self.classes is None:
            self.classes = classes
        elif classes != self.classes:
            raise ValueError(f"{folder} has class folders {classes[:5]}... but the first folder read has "
                             f"{self.classes[:5]}...; every corruption/severity needs the same class folders")
        return items

    def num_batches(self, batch_size: int) -> int:
        return max(-(-len(v) // batch_size) for v in self._items.values())

    def batches(self, name: str, severity: int, batch_size: int) -> Iterator[Batch]:
        items = self._items.get((name, severity), [])
        yield from decode_batches(items, batch_size, self.workers)


def _severity_dirs(folder: Path) -> dict[int, Path]:
    return {int(d.name): d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()}


def scan_image_folder(folder: str | os.PathLike) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(path, class index)`` of every image under ``folder/class/``, and the sorted class names."""
    folder = Path(folder)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    items = [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).iterdir())
             if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not items:
        raise ValueError(f"{folder} holds no images in class folders (class/image{IMAGE_EXTENSIONS[0]}); "
                         f"check the path (a CIFAR pickle folder needs --clean-dataset cifar10/cifar100)")
    return items, classes


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"{path} cannot be decoded ({exc}); replace or delete the file") from None


def decode_batches(items: Sequence[tuple[Path, int]], batch_size: int, workers: int = 4) -> Iterator[Batch]:
    """Decode ``(path, label)`` items into uint8 (B, H, W, 3) batches; all images must share one size."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            arrays = list(pool.map(_decode, [p for p, _ in chunk]))
            shape = arrays[0].shape
            for (path, _), a in zip(chunk, arrays, strict=True):
                if a.shape != shape:
                    raise ValueError(f"{path} is {a.shape[1]}x{a.shape[0]} but {chunk[0][0]} is "
                                     f"{shape[1]}x{shape[0]}; resize the set to one image size")
            yield (torch.from_numpy(np.stack(arrays)),
                   torch.tensor([label for _, label in chunk], dtype=torch.int64))


def open_corrupted(root: str | os.PathLike, names: Sequence[str] | None = None,
                   severities: Sequence[int] | None = None) -> NpyCorruptedSet | FolderCorruptedSet:
    """The reader for ``root``: CIFAR-C layout when it holds ``.npy`` files, else an image-folder tree."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data root {root} is not a directory; pass --data-root the folder of the -C set")
    if any(root.glob("*.npy")):
        return NpyCorruptedSet(root, names, severities)
    return FolderCorruptedSet(root, names, severities)
