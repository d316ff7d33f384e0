"""Shared test fixtures: tiny fake CIFAR-10 / CIFAR-100 datasets in the real on-disk layout.

The files are written the way the original Python-2 pickles are (protocol 2, dict keys and
strings as Python 2 ``str`` opcodes, numpy arrays through ``numpy.core.multiarray._reconstruct``),
so readers see exactly what they would see with the real downloads, just small:

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

Use the fixtures ``fake_cifar10`` / ``fake_cifar100`` (each returns a :class:`FakeCifar` with the
``root`` to pass as ``--data-root`` and the arrays written, for exact comparisons), or call
:func:`write_fake_cifar` directly for other sizes. Labels cycle through the classes, so every
split is class-balanced when its size is a multiple of the class count.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# As the auxtrain command does (cli.main_exit), before any test imports torch: OpenMP threads that
# busy-wait spin against the other load of a shared machine. A value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Py2Pickler(pickle._Pickler):
    """Pickles ``bytes`` as Python 2 ``str`` opcodes and numpy globals under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module, name = obj.__module__, name or obj.__qualname__
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def _py2(obj):
    """Turns str into bytes recursively, so that they are written as Python 2 str."""
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, dict):
        return {_py2(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_py2(v) for v in obj]
    return obj


def write_py2_pickle(path: Path, obj) -> None:
    """Writes ``obj`` like the original CIFAR files (Python 2 strings, protocol 2)."""
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(_py2(obj))


@dataclass
class FakeCifar:
    """What :func:`write_fake_cifar` wrote: the root and the exact arrays, (N, 3, 32, 32) uint8."""

    root: Path
    name: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def write_fake_cifar(root: Path, name: str = "cifar10", *, train_size: int = 50, test_size: int = 20,
                     seed: int = 0) -> FakeCifar:
    """Writes a tiny CIFAR-10 (train split over 5 batch files) or CIFAR-100 under ``root``.

    ``train_size`` must be a multiple of 5 for cifar10 (five equal batch files).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    num_classes = 10 if name == "cifar10" else 100
    classes = [f"class_{i:02d}" for i in range(num_classes)]
    train_images = rng.integers(0, 256, (train_size, 3, 32, 32), dtype=np.uint8)
    test_images = rng.integers(0, 256, (test_size, 3, 32, 32), dtype=np.uint8)
    train_labels = np.arange(train_size, dtype=np.int64) % num_classes
    test_labels = (np.arange(test_size, dtype=np.int64) * 7 + 3) % num_classes

    def batch(images, labels, title, label_key, extra=None):
        d = {"batch_label": title, label_key: [int(v) for v in labels],
             "data": images.reshape(len(images), -1),
             "filenames": [f"img_{i:05d}.png" for i in range(len(images))]}
        d.update(extra or {})
        return d

    if name == "cifar10":
        if train_size % 5:
            raise ValueError(f"train_size={train_size} must be a multiple of 5 for cifar10")
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        per = train_size // 5
        for b in range(5):
            sl = slice(b * per, (b + 1) * per)
            title = f"training batch {b + 1} of 5"
            entry = batch(train_images[sl], train_labels[sl], title, "labels")
            write_py2_pickle(folder / f"data_batch_{b + 1}", entry)
        test = batch(test_images, test_labels, "testing batch 1 of 1", "labels")
        write_py2_pickle(folder / "test_batch", test)
        write_py2_pickle(folder / "batches.meta",
                         {"num_cases_per_batch": per, "label_names": classes, "num_vis": 3072})
    elif name == "cifar100":
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        splits = (("train", train_images, train_labels), ("test", test_images, test_labels))
        for split, images, labels in splits:
            write_py2_pickle(folder / split, batch(images, labels, f"{split}ing batch 1 of 1", "fine_labels",
                                                    {"coarse_labels": [int(v) // 5 for v in labels]}))
        write_py2_pickle(folder / "meta", {"fine_label_names": classes,
                                           "coarse_label_names": [f"super_{i:02d}" for i in range(20)]})
    else:
        raise ValueError(f"name={name!r}: use 'cifar10' or 'cifar100'")
    return FakeCifar(root, name, classes, train_images, train_labels, test_images, test_labels)


@pytest.fixture
def fake_cifar10(tmp_path) -> FakeCifar:
    """Tiny CIFAR-10 (50 train images in 5 batch files, 20 test) under ``tmp_path / "data"``."""
    return write_fake_cifar(tmp_path / "data", "cifar10")


@pytest.fixture
def fake_cifar100(tmp_path) -> FakeCifar:
    """Tiny CIFAR-100 (200 train images, 100 test) under ``tmp_path / "data"``."""
    return write_fake_cifar(tmp_path / "data", "cifar100", train_size=200, test_size=100)
