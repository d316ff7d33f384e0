"""Corruption robustness: per-(corruption, severity) errors and the mCE summaries of method.md section 3.

* :func:`corruption_errors` streams a -C set (CIFAR-C ``.npy`` files, memory-mapped, or an
  ImageNet-C style folder tree) through a model and returns the error table.
* :func:`mce` (from :mod:`auxtrain.metrics`) turns an error table into the summary numbers:
  unnormalised mCE (the CIFAR convention of AugMix and RobustBench), family / extra / all-19
  means, clean error, and, against a baseline's table, the normalised and relative mCE of ImageNet-C.
* :func:`write_report` (from :mod:`auxtrain.report`) writes the CSV / JSON / Markdown / PNG report.
* :func:`generate_corrupted_testset` builds a cached -C set from any clean test set.

Example::

    from auxtrain import evaluation
    from auxtrain.export import load_model

    model = load_model("runs/c100/model_plain.pt")
    errors = evaluation.corruption_errors(model, "data/CIFAR-100-C")
    print(evaluation.mce(errors)["mce"])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from auxtrain.data.corrupted import CLEAN_FILE, NpyCorruptedSet, open_corrupted
from auxtrain.metrics import mce as mce
from auxtrain.report import read_errors as read_errors
from auxtrain.report import write_report as write_report

COLUMNS = ("corruption", "severity", "error", "n")
Clean = tuple[Any, Any] | str | os.PathLike


def _names(subset: str | Sequence[str] | None) -> list[str] | None:
    """Corruption names from a subset name ("all", "common", a family), "a,b" or a list."""
    from corruptions import get_corruption_names

    if subset is None:
        return None
    items = subset.split(",") if isinstance(subset, str) else list(subset)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            expanded = get_corruption_names(item)
        except (ValueError, KeyError):
            expanded = [item]  # a corruption name (or a custom file stem of the -C folder)
        names += [n for n in expanded if n not in names]
    if not names:
        raise ValueError(f"corruptions={subset!r} names no corruption; pass names, a family or 'all'")
    return names


def _levels(severities: str | int | Sequence[int] | None) -> list[int] | None:
    """Severities from ints or a string such as "1-5", "3" or "1,3,5"."""
    if severities is None:
        return None
    if isinstance(severities, int):
        return [severities]
    if isinstance(severities, str):
        levels: list[int] = []
        try:
            for item in filter(None, (i.strip() for i in severities.split(","))):
                lo, _, hi = item.partition("-")
                levels += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            levels = []
        if not levels:
            raise ValueError(f"severities={severities!r} is not a severity list; write e.g. 1-5, 3 or 1,3,5")
        return levels
    return [int(s) for s in severities]


def resolve_device(device: str | torch.device | None = None, model: nn.Module | None = None) -> torch.device:
    """``device`` as a torch.device: "auto" = cuda if available; None = the model's device (or cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device is None:
        p = next(iter(model.parameters()), None) if model is not None else None
        return p.device if p is not None else torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def _as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) on the host -> float (B, 3, H, W) in [0, 1] on ``device``; uint8 crosses the bus."""
    if device.type == "cuda":
        images = images.pin_memory().to(device, non_blocking=True)
    else:
        images = images.to(device)
    return images.permute(0, 3, 1, 2).contiguous().float().div_(255)


@torch.inference_mode()
def _count_correct(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   device: torch.device) -> tuple[int, int]:
    """(correct top-1 predictions, images) over ``batches`` of uint8 NHWC images and labels."""
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    for images, labels in batches:
        logits = model(_as_float(images, device))
        correct += (logits.argmax(1) == labels.to(device, non_blocking=True)).sum()
        n += labels.shape[0]
    return int(correct.item()), n


def _nhwc(images: Any, what: str) -> torch.Tensor:
    """A uint8 (N, H, W, 3) tensor from numpy (N, H, W, 3) or a tensor (N, 3, H, W)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"{what}: numpy images must be uint8 (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{what}: tensor images must be uint8 (N, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}; convert with (x * 255).round().to(torch.uint8)")
        return images.cpu().permute(0, 2, 3, 1)
    raise TypeError(f"{what}: images must be a numpy array or a torch tensor, got {type(images).__name__}")


def _tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    for i in range(0, images.shape[0], batch_size):
        yield images[i:i + batch_size], labels[i:i + batch_size]


def accuracy(model: nn.Module, images: Any, labels: Any, batch_size: int = 256,
             device: str | torch.device | None = None) -> float:
    """Top-1 accuracy (percent) of ``model`` on uint8 images: numpy (N, H, W, 3) or tensor (N, 3, H, W)."""
    dev = resolve_device(device, model)
    images = _nhwc(images, "images")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({images.shape[0]},) to match "
                         f"the images")
    model = model.to(dev).eval()
    correct, n = _count_correct(model, _tensor_batches(images, labels, batch_size), dev)
    return 100.0 * correct / max(n, 1)


def _clean_batches(clean: Clean | None, data, batch_size: int):
    """(batches, n) of the clean test set, or None. See :func:`corruption_errors` for the accepted forms."""
    if clean is None:
        if isinstance(data, NpyCorruptedSet) and (data.root / CLEAN_FILE).is_file():
            clean = data.root / CLEAN_FILE
        else:
            return None
    if isinstance(clean, (str, os.PathLike)):
        path = Path(clean)
        if path.is_dir():
            from auxtrain.data.corrupted import decode_batches, scan_image_folder

            items, classes = scan_image_folder(path)
            if getattr(data, "classes", None) not in (None, classes):
                raise ValueError(f"clean folder {path} has other class folders than the -C set; pass the "
                                 f"matching clean test folder")
            return decode_batches(items, batch_size), len(items)
        if path.suffix != ".npy" or not path.is_file():
            raise ValueError(f"clean={str(path)!r} must be a .npy file of uint8 (N, H, W, 3) images or a "
                             f"class/image folder")
        if not isinstance(data, NpyCorruptedSet):
            raise ValueError(f"clean={str(path)!r}: a .npy of clean images takes its labels from a CIFAR-C "
                             f"labels.npy; with an image-folder -C set pass a clean class/image folder")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is truncated or not a .npy file ({exc}); write it again") from None
        if array.dtype != np.uint8 or array.shape[1:] != (*data.image_size, 3) or \
                array.shape[0] != data.num_images:
            raise ValueError(f"{path} has {array.dtype} {tuple(array.shape)}, expected uint8 "
                             f"({data.num_images}, H, W, 3): the clean images of the -C set, in its order")
        labels = data.labels
        gen = ((torch.from_numpy(np.array(array[i:i + batch_size])), labels[i:i + batch_size])
               for i in range(0, data.num_images, batch_size))
        return gen, data.num_images
    if not (isinstance(clean, (tuple, list)) and len(clean) == 2):
        raise TypeError(f"clean must be (images, labels), a .npy path or a folder, got "
                        f"{type(clean).__name__}")
    images = _nhwc(clean[0], "clean")
    labels = torch.as_tensor(np.asarray(clean[1]), dtype=torch.int64)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"clean labels have shape {tuple(labels.shape)}, expected ({images.shape[0]},)")
    if isinstance(data, NpyCorruptedSet) and labels.shape[0] == data.num_images and \
            not torch.equal(labels, data.labels):
        raise ValueError(f"the clean labels differ from {data.root / 'labels.npy'}; the clean set must be "
                         f"the test set the -C files were made from, in the same order")
    return _tensor_batches(images, labels, batch_size), images.shape[0]


def corruption_errors(
    model: nn.Module,
    root: str | os.PathLike,
    corruptions: str | Sequence[str] | None = None,
    severities: str | Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    clean: Clean | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Top-1 error (percent) of ``model`` per (corruption, severity) of the -C set at ``root``.

    Args:
        model: any module taking float images (N, 3, H, W) in [0, 1] (``load_model`` returns one).
            It is put in eval mode and on ``device``.
        root: a CIFAR-C folder (NAME.npy + labels.npy, memory-mapped and streamed) or an ImageNet-C
            style tree (corruption/severity/class/image); detected from its contents.
        corruptions: names, a family, "common"/"extra"/"all", or None for every file found.
            Requested names absent from ``root`` are listed in ``errors.attrs["missing"]``.
        severities: subset of severities, ints or a string like "1-5" / "1,3" (default: all in the set).
        batch_size: images per forward pass.
        device: "cpu", "cuda", "auto", a torch.device, or None (the model's device).
        clean: the clean test set, adding the row ("clean", 0): ``(images, labels)`` with uint8
            images as numpy (N, H, W, 3) or a tensor (N, 3, H, W); a ``.npy`` path of uint8
            (N, H, W, 3) images labelled by the set's labels.npy; or a class/image folder.
            Default: ``root/clean.npy`` when present (``generate_corrupted_testset`` writes it).
        progress: show a progress bar over corruptions x severities.

    Returns:
        DataFrame with columns corruption, severity, error, n (clean row first when present).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    data = open_corrupted(root, _names(corruptions), _levels(severities))
    dev = resolve_device(device, model)
    was_training = model.training
    model = model.to(dev).eval()
    rows = []
    from tqdm.auto import tqdm

    cleaned = _clean_batches(clean, data, batch_size)
    jobs = [(n, s) for n in data.names for s in data.severities]
    bar = tqdm(total=len(jobs) + (cleaned is not None), desc="eval", unit="set", disable=not progress)
    try:
        if cleaned is not None:
            bar.set_postfix_str("clean")
            correct, n = _count_correct(model, cleaned[0], dev)
            rows.append(("clean", 0, 100.0 * (1 - correct / n), n))
            bar.update()
        for name, severity in jobs:
            bar.set_postfix_str(f"{name} s{severity}")
            correct, n = _count_correct(model, data.batches(name, severity, batch_size), dev)
            if n:
                rows.append((name, severity, 100.0 * (1 - correct / n), n))
            bar.update()
    finally:
        bar.close()
        model.train(was_training)
    errors = pd.DataFrame(rows, columns=list(COLUMNS))
    errors.attrs["missing"] = list(data.missing)
    errors.attrs["root"] = str(root)
    return errors


def seen_corruptions(meta: dict[str, Any]) -> list[str] | None:
    """Corruption names a model was trained on, from its export metadata (None if not recorded)."""
    if "seen_corruptions" in meta:
        return list(meta["seen_corruptions"])
    spec = meta.get("corruptions")
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = [] if spec in ("", "none") else [item.split("+") for item in spec.split(",")]
    names: list[str] = []
    for branch in spec:
        for item in [branch] if isinstance(branch, str) else branch:
            names += [n for n in (_names(item) or []) if n not in names]
    return names


def generate_corrupted_testset(
    images: Any,
    labels: Any,
    cache_dir: str | os.PathLike,
    names: str | Sequence[str] | None = None,
    severities: str | Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Path:
    """A -C set of ``images`` in ``cache_dir`` (CIFAR-C layout, plus ``clean.npy``); cached.

    Calls :func:`corruptions.make_c` with a fixed ``seed``: files already complete for the same
    images, seed and severities are reused, so a second call costs only a hash of the images.
    Images are uint8 numpy (N, H, W, 3) or a uint8 tensor (N, 3, H, W); ``names`` and
    ``severities`` take the forms :func:`corruption_errors` accepts. Returns ``cache_dir``.
    """
    from auxtrain.run_dir import atomic_write_bytes
    from corruptions import make_c

    nhwc = _nhwc(images, "images").contiguous().numpy()
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    out = make_c(nhwc, labels, cache_dir, names=_names(names), severities=_levels(severities),
                 seed=seed, device=device, progress=progress)
    clean_path = Path(out) / CLEAN_FILE
    if not clean_path.is_file() or not np.array_equal(np.load(clean_path, mmap_mode="r"), nhwc):
        import io

        buffer = io.BytesIO()
        np.save(buffer, nhwc)
        atomic_write_bytes(clean_path, buffer.getvalue())
    return Path(out)
