"""Write a corrupted test set in the CIFAR-C layout: one NAME.npy per corruption + labels.npy.

Layout (as CIFAR-10-C / CIFAR-100-C): ``NAME.npy`` is (N * S, H, W, 3) uint8, the N test images at
the first severity, then the second, ... (rows (k - 1) * N .. k * N for the k-th severity), and
``labels.npy`` holds the N labels tiled S times (uint8 when they fit, else int64).

Safe to interrupt and resume: each file is written to ``NAME.npy.tmp`` and renamed only when
complete, so a NAME.npy is never partial; existing complete files are verified and skipped. Every
(corruption, severity) block is drawn from its own generator seeded by (seed, name, severity), so
a resumed run writes exactly the bytes of an uninterrupted one, on CPU or CUDA alike. A small
``make_c.json`` records the settings and a hash of the inputs, so a resume with other images,
seed or severities is refused instead of mixing two datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._params import check_profile
from ._vocabulary import parse_severities, resolve_names
from .api import MIN_SIZE, corrupt

MANIFEST = "make_c.json"
_FORMAT = 1


def _as_nchw_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be a uint8 array (N, H, W, 3) as stored on disk, got {images.dtype} "
                f"{images.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be a uint8 tensor (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        return images
    raise TypeError(f"images must be a numpy array (N, H, W, 3) or a tensor (N, 3, H, W), got {type(images)}")


def _resolve_device(device: str | torch.device | None, images: torch.Tensor) -> torch.device:
    if device is None:
        return images.device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'auto'") from exc


def block_seed(seed: int, name: str, severity: int) -> int:
    """The generator seed of one (corruption, severity) block: stable across runs and machines."""
    digest = hashlib.sha256(f"make_c/{seed}/{name}/{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"out_dir={str(out_dir)!r} is not writable ({exc}); choose a writable directory"
        ) from exc


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _is_complete(path: Path, shape: tuple[int, ...]) -> bool:
    """True if ``path`` is a complete uint8 .npy of ``shape``; ValueError if it is something else."""
    if not path.exists():
        return False
    try:
        array = np.load(path, mmap_mode="r")
        ok = array.shape == shape and array.dtype == np.uint8
    except (ValueError, OSError):
        ok = False
    if not ok:
        raise ValueError(
            f"{path} exists but is not a complete (N*S, H, W, 3) = {shape} uint8 array; "
            "delete it (or choose another out_dir) to regenerate it"
        )
    return True


def make_c(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | Sequence[int],
    out_dir: str | os.PathLike,
    names: str | Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 1000,
    *,
    profile: str = "auto",
    progress: bool = True,
) -> Path:
    """Write ``out_dir/NAME.npy`` for every corruption in ``names`` plus ``out_dir/labels.npy``.

    Args:
        images: the clean test images, numpy (N, H, W, 3) uint8 (as stored on disk) or a uint8
            tensor (N, 3, H, W).
        labels: N integer labels.
        out_dir: output directory (created if missing); existing complete files are skipped.
        names: corruption names, a subset name ("all", "common", "noise", ...) or None for all 19.
        severities: severities to write, in file order.
        seed: base seed; the output is a pure function of (images, seed, names, severities,
            batch_size, profile).
        device: where to compute ("cpu", "cuda", "auto"); None = the images' device.
        batch_size: images corrupted per call.
        profile: severity profile passed to ``corrupt`` ("auto", "cifar", "imagenet").
        progress: show a tqdm progress bar.

    Returns:
        ``out_dir`` as a Path.
    """
    batch = _as_nchw_uint8(images)
    n, _, height, width = batch.shape
    if n == 0 or height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(
            f"images has shape {tuple(batch.shape)}; need N >= 1 images of at least {MIN_SIZE} px"
        )
    label_array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if label_array.shape != (n,) or not np.issubdtype(label_array.dtype, np.integer):
        raise ValueError(
            f"labels must be {n} integers (one per image), got {label_array.dtype} {label_array.shape}"
        )
    names = resolve_names(names, what="names")
    severities = list(parse_severities(severities))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    check_profile(profile)
    dev = _resolve_device(device, batch)
    out = Path(out_dir)
    _check_writable(out)

    # The manifest pins what the files contain, so a resume cannot mix two different runs.
    host_images = batch.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    settings = {
        "format": _FORMAT,
        "seed": int(seed),
        "severities": severities,
        "batch_size": batch_size,
        "profile": profile,
        "image_shape": [n, height, width, 3],
        "images_sha256": hashlib.sha256(host_images.tobytes()).hexdigest(),
        "labels_sha256": hashlib.sha256(label_array.astype(np.int64).tobytes()).hexdigest(),
    }
    manifest = out / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ValueError(
                f"{out} already holds a make_c run with different {', '.join(changed)}; "
                "use another out_dir, or delete it to start over"
            )
    else:
        tmp = manifest.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(settings, indent=1))
        os.replace(tmp, manifest)

    num_sev = len(severities)
    label_dtype = np.uint8 if label_array.min() >= 0 and label_array.max() < 256 else np.int64
    tiled = np.tile(label_array.astype(label_dtype), num_sev)
    labels_path = out / "labels.npy"
    if not (labels_path.exists() and np.array_equal(np.load(labels_path), tiled)):
        _atomic_save(labels_path, tiled)

    from tqdm.auto import tqdm

    shape = (n * num_sev, height, width, 3)
    bar = tqdm(total=len(names) * num_sev * n, unit="img", desc="make_c", disable=not progress)
    try:
        for name in names:
            final = out / f"{name}.npy"
            bar.set_postfix_str(name)
            if _is_complete(final, shape):
                bar.update(num_sev * n)
                continue
            _write_one(batch, name, severities, seed, dev, batch_size, profile, final, shape, bar)
    finally:
        bar.close()
    return out


def _write_one(
    batch: torch.Tensor,
    name: str,
    severities: list[int],
    seed: int,
    device: torch.device,
    batch_size: int,
    profile: str,
    final: Path,
    shape: tuple[int, ...],
    bar,
) -> None:
    n = batch.shape[0]
    tmp = final.with_name(final.name + ".tmp")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for k, severity in enumerate(severities):
            generator = torch.Generator().manual_seed(block_seed(seed, name, severity))
            for start in range(0, n, batch_size):
                chunk = batch[start : start + batch_size].to(device, non_blocking=True)
                corrupted = corrupt(chunk, name, severity, generator=generator, profile=profile)
                array[k * n + start : k * n + start + chunk.shape[0]] = (
                    corrupted.permute(0, 2, 3, 1).cpu().numpy()
                )
                bar.update(chunk.shape[0])
        array.flush()
        del array
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
