"""Write a corrupted test set in the CIFAR-C layout: NAME.npy per corruption, labels.npy, clean.npy.

Layout (as CIFAR-10-C / CIFAR-100-C): ``NAME.npy`` is (N * S, H, W, 3) uint8, the N test images at
the first severity, then the second, ... (rows (k - 1) * N .. k * N for the k-th severity), and
``labels.npy`` holds the N labels tiled S times (uint8 when they fit, else int64). ``clean.npy``
(N, H, W, 3) uint8 holds the clean images (not part of CIFAR-C; readers of that layout ignore it),
so the folder alone gives the clean error too.

Reproducible whatever runs it: each cell of ``cell_size(H, W)`` images of a (corruption, severity)
block is drawn from its own generator seeded by (seed, corruption, severity, cell index), so the
bytes do not depend on the number of threads or processes, on CPU or CUDA alike. Under
``torch.distributed`` (``distributed=True``) the cells are shared among the ranks.

Safe to interrupt and resume: each file is written to ``NAME.npy.tmp`` (preallocated, so a full disk
fails up front with the space needed) and renamed only when complete. ``make_c.json`` records the
settings, a hash of the inputs, and per file its SHA-256 checksum (see ``corruptions._c_files``) and
a fingerprint of the kernel that made it, so a resume verifies complete files byte for byte and
refuses other images, seeds or severities, and files made by a kernel that has changed since.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from . import _c_files as files
from ._c_files import cell_seed as cell_seed
from ._c_files import cell_size as cell_size
from ._params import check_profile
from ._ranks import Ranks
from ._vocabulary import parse_severities, resolve_names
from .api import MIN_SIZE, corrupt

MANIFEST = "make_c.json"
LABELS = "labels.npy"
CLEAN = "clean.npy"
_FORMAT = 2  # 2: seed cells of cell_size(H, W) images, checksums, kernel fingerprints, clean.npy
ROBUSTBENCH_IMAGES = 10_000  # RobustBench's CIFAR-C loader slices 10,000 rows per severity


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


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"out_dir={str(out_dir)!r} is not writable ({exc}); choose a writable directory"
        ) from exc


def kernel_fingerprint(name: str, severities: Sequence[int], height: int, width: int, profile: str) -> str:
    """SHA-256 of ``name``'s output on a fixed probe image at each severity: changes when the kernel does."""
    probe = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(20190201))
    h = hashlib.sha256()
    for s in severities:
        out = corrupt(probe, name, s, generator=torch.Generator().manual_seed(s), profile=profile)
        h.update(out.numpy().tobytes())
    return h.hexdigest()


def verify(out_dir: str | os.PathLike, filenames: Sequence[str] | None = None,
           threads: int | None = None) -> dict[str, bool]:
    """{file name: matches its checksum} for the files of a make_c folder (default: all it records).

    Files that ``make_c.json`` records no checksum for (a folder of another tool, or of make_c
    before format 2) are left out: only their .npy header can be checked.
    """
    out = Path(out_dir)
    try:
        doc = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    recorded = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(recorded, dict) or doc.get("format") != _FORMAT:
        return {}
    n, blocks = doc["image_shape"][0], len(doc["severities"])
    wanted = [f for f in (recorded if filenames is None else filenames) if f in recorded]
    with ThreadPoolExecutor(threads or max(1, torch.get_num_threads())) as pool:
        return {f: files.verify_file(out / f, recorded[f], 1 if f == CLEAN else blocks, n, doc["cell_size"],
                                     pool) for f in wanted}


def make_c(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | Sequence[int],
    out_dir: str | os.PathLike,
    names: str | Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    *,
    profile: str = "auto",
    threads: int | None = None,
    distributed: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/NAME.npy`` for every corruption in ``names``, ``labels.npy`` and ``clean.npy``.

    Args:
        images: the clean test images, numpy (N, H, W, 3) uint8 (as stored on disk) or a uint8
            tensor (N, 3, H, W).
        labels: N integer labels.
        out_dir: output directory (created if missing); existing complete files are verified
            (checksum and kernel fingerprint) and skipped.
        names: corruption names, a subset name ("all", "common", "noise", ...) or None for all 19.
        severities: severities to write, in file order.
        seed: base seed; the output is a pure function of (images, seed, names, severities, profile).
        device: where to compute ("cpu", "cuda", "auto"); None = the images' device.
        batch_size: no effect (a DeprecationWarning): the images per call are the seed cells.
        profile: severity profile passed to ``corrupt`` ("auto", "cifar", "imagenet").
        threads: cells corrupted at once in this process, each single-threaded (None: torch's
            intra-op thread count). Coarse work-sharing instead of OpenMP's fork-join per op keeps
            the speed on a machine shared with other CPU-bound processes, whatever
            OMP_WAIT_POLICY is. torch's intra-op thread count is 1 during the call, then restored.
        distributed: share the cells among the ranks of the initialized ``torch.distributed``
            default group; every rank calls make_c with the same arguments and ``out_dir`` must be
            one shared folder. No effect without a process group.
        progress: show a tqdm progress bar (rank 0 only).

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
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive integer or None")
    if batch_size is not None:
        warnings.warn("make_c(batch_size=...) has no effect: the images are corrupted in seed cells of "
                      "cell_size(H, W) images, so the output does not depend on a batch size; drop it",
                      DeprecationWarning, stacklevel=2)
    check_profile(profile)
    dev = _resolve_device(device, batch)
    out = Path(out_dir)
    group = Ranks(distributed)
    _check_writable(out)

    host_images = batch.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    settings = {
        "format": _FORMAT,
        "seed": int(seed),
        "severities": severities,
        "profile": profile,
        "image_shape": [n, height, width, 3],
        "cell_size": cell_size(height, width),
        "images_sha256": hashlib.sha256(host_images.tobytes()).hexdigest(),
        "labels_sha256": hashlib.sha256(label_array.astype(np.int64).tobytes()).hexdigest(),
    }
    label_dtype = np.uint8 if label_array.min() >= 0 and label_array.max() < 256 else np.int64
    extras = {LABELS: np.tile(label_array.astype(label_dtype), len(severities)), CLEAN: host_images}
    job = _Job(out, settings, names, batch, dev, group, threads)
    plan = group.on_main(lambda: job.plan(extras))
    job.run(plan, progress)
    return out


class _Job:
    """One make_c call: what to write (:meth:`plan`, rank 0) and the cells of this rank (:meth:`run`)."""

    def __init__(self, out: Path, settings: dict, names: list[str], batch: torch.Tensor,
                 device: torch.device, group: Ranks, threads: int | None) -> None:
        self.out, self.settings, self.names, self.batch = out, settings, names, batch
        self.device, self.group = device, group
        self.threads = threads or max(1, torch.get_num_threads())
        self.n, _, self.height, self.width = batch.shape
        self.severities = settings["severities"]
        self.cell = settings["cell_size"]
        self.shape = (self.n * len(self.severities), self.height, self.width, 3)
        self.manifest = out / MANIFEST
        self.entries: dict[str, dict] = {}

    # -- rank 0: compare with what is there, verify, reserve the space -------------------------
    def plan(self, extras: dict[str, np.ndarray]) -> list[tuple[str, int, str]]:
        """[(name, data offset in its .tmp, kernel fingerprint)] of the files still to write."""
        if self.manifest.exists():
            try:
                previous = json.loads(self.manifest.read_text())
            except ValueError as exc:
                raise ValueError(f"{self.manifest} is not valid JSON ({exc}); delete it and the "
                                 "folder's .npy files to start over") from None
            changed = sorted(k for k in self.settings if previous.get(k) != self.settings[k])
            if changed:
                detail = " (made by an older make_c)" if "format" in changed else ""
                raise ValueError(f"{self.out} already holds a make_c run with different "
                                 f"{', '.join(changed)}{detail}; use another out_dir, or delete it to "
                                 "start over")
            self.entries = dict(previous.get("files", {}))
        self._write_manifest()
        todo = []
        with ThreadPoolExecutor(self.threads) as pool:
            for name, array in extras.items():
                self._ensure_extra(name, array, pool)
            for name in self.names:
                if not self._is_complete(name, pool):
                    todo.append(name)
        needed = len(todo) * (len(files.header_bytes(self.shape, np.uint8)) + int(np.prod(self.shape)))
        for name in todo:  # stale partial files of a killed run do not count against the free space
            (self.out / f"{name}.npy.tmp").unlink(missing_ok=True)
        files.check_free_space(self.out, needed)
        plan = []
        try:
            for name in todo:
                header = files.header_bytes(self.shape, np.uint8)
                files.preallocate(self.out / f"{name}.npy.tmp", header, int(np.prod(self.shape)))
                fingerprint = kernel_fingerprint(name, self.severities, self.height, self.width,
                                                 self.settings["profile"])
                plan.append((name, len(header), fingerprint))
        except BaseException:
            for name in todo:
                (self.out / f"{name}.npy.tmp").unlink(missing_ok=True)
            raise
        return plan

    def _write_manifest(self) -> None:
        doc = {**self.settings, "checksum": "sha256 of the .npy header + the sha256 of each cell of "
                                            "cell_size rows per severity block (corruptions._c_files)",
               "files": self.entries}
        text = json.dumps(doc, indent=1)
        if self.manifest.is_file() and self.manifest.read_text() == text:
            return  # unchanged: a verified rerun leaves the folder as it was
        tmp = self.manifest.with_name(MANIFEST + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.manifest)

    def _ensure_extra(self, filename: str, array: np.ndarray, pool) -> None:
        path, blocks = self.out / filename, (len(self.severities) if filename == LABELS else 1)
        entry = self.entries.get(filename)
        if path.exists() and entry and files.verify_file(path, entry, blocks, self.n, self.cell, pool):
            return
        files.check_free_space(self.out, array.nbytes)
        files.save_atomic(path, array)
        self.entries[filename] = {"sha256": files.file_digest(path, blocks, self.n, self.cell, pool)}
        self._write_manifest()

    def _is_complete(self, name: str, pool) -> bool:
        path = self.out / f"{name}.npy"
        if not path.exists():
            return False
        fix = "delete it (or choose another out_dir) to regenerate it"
        try:
            array = np.load(path, mmap_mode="r")
            ok = array.shape == self.shape and array.dtype == np.uint8
        except (ValueError, OSError):
            ok = False
        if not ok:
            raise ValueError(f"{path} exists but is not a complete (N*S, H, W, 3) = {self.shape} uint8 "
                             f"array; {fix}")
        entry = self.entries.get(path.name)
        if not entry or not files.verify_file(path, entry, len(self.severities), self.n, self.cell, pool):
            raise ValueError(f"{path} does not match its sha256 checksum in {self.manifest} (bytes changed "
                             f"on disk, or written by another run); {fix}")
        fingerprint = kernel_fingerprint(name, self.severities, self.height, self.width,
                                         self.settings["profile"])
        if entry.get("kernel") != fingerprint:
            raise ValueError(f"{path} was made by another version of the {name} kernel (its fingerprint in "
                             f"{self.manifest} differs from this one's); {fix}")
        return True

    # -- every rank: the cells ---------------------------------------------------------------
    def run(self, plan: list[tuple[str, int, str]], progress: bool) -> None:
        from tqdm.auto import tqdm

        n, cell = self.n, self.cell
        ranges = files.row_ranges(len(self.severities), n, cell)
        tasks = [(f, r) for f in range(len(plan)) for r in range(len(ranges))]
        mine = tasks[self.group.rank::self.group.size]
        left = {f: sum(1 for g, _ in mine if g == f) for f in range(len(plan))}
        digests: dict[tuple[int, int], bytes] = {}
        try:
            fds = {f: os.open(self.out / f"{name}.npy.tmp", os.O_WRONLY) for f, (name, *_) in enumerate(plan)}
        except FileNotFoundError as exc:
            raise ValueError(f"rank {self.group.rank} cannot see {exc.filename}, which rank 0 created: with "
                             "several processes, out_dir must be one folder they all see (a shared file "
                             "system)") from None
        bar = tqdm(total=len(plan) * len(self.severities) * n, unit="img", desc="make_c",
                   disable=not progress or self.group.rank != 0)
        old_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # parallel over cells, not inside ops (see the threads argument)
        pool = ThreadPoolExecutor(self.threads)
        try:
            futures = [pool.submit(self._cell, plan[f], fds[f], ranges[r]) for f, r in mine]
            for (f, r), future in zip(mine, futures, strict=True):
                digests[f, r] = future.result()
                bar.update((ranges[r][1] - ranges[r][0]) * self.group.size)
                left[f] -= 1
                if left[f] == 0:
                    os.fsync(fds[f])
                    if not self.group.on:
                        self._finish(plan[f], [digests[f, k] for k in range(len(ranges))])
            if self.group.on:
                for part in self.group.gather(digests):
                    digests.update(part)
                self.group.on_main(lambda: [self._finish(plan[f], [digests[f, k] for k in range(len(ranges))])
                                            for f in range(len(plan))])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.group.rank == 0:
                for name, *_ in plan:
                    (self.out / f"{name}.npy.tmp").unlink(missing_ok=True)
            raise
        finally:
            pool.shutdown(wait=True)
            torch.set_num_threads(old_threads)
            for fd in fds.values():
                os.close(fd)
            bar.close()

    def _cell(self, item: tuple[str, int, str], fd: int, rows: tuple[int, int]) -> bytes:
        name, offset, _ = item
        first, end = rows
        k, start = divmod(first, self.n)
        severity = self.severities[k]
        generator = torch.Generator().manual_seed(cell_seed(self.settings["seed"], name, severity,
                                                            start // self.cell))
        chunk = self.batch[start:start + end - first].to(self.device, non_blocking=True)
        corrupted = corrupt(chunk, name, severity, generator=generator, profile=self.settings["profile"])
        data = corrupted.permute(0, 2, 3, 1).cpu().contiguous().numpy()
        row_bytes = self.height * self.width * 3
        try:
            files.pwrite_all(fd, memoryview(data).cast("B"), offset + first * row_bytes)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the file system could not keep the reservation
                raise files.no_space_error(self.out, data.nbytes) from None
            raise
        return files.cell_digest(data)

    def _finish(self, item: tuple[str, int, str], cell_digests: list[bytes]) -> None:
        name, offset, fingerprint = item
        header = files.header_bytes(self.shape, np.uint8)
        assert len(header) == offset
        # The checksum is recorded before the rename: a kill in between leaves only the .tmp.
        checksum = files.tree_digest(header, cell_digests)
        self.entries[f"{name}.npy"] = {"sha256": checksum, "kernel": fingerprint}
        self._write_manifest()
        os.replace(self.out / f"{name}.npy.tmp", self.out / f"{name}.npy")
