"""The files of a CIFAR-C layout set: the seed grid, checksums, preallocated writes, free space.

Private to :mod:`corruptions.make_c` (and read by auxtrain's -C reader through ``verify_file``).

* The seed grid: a (corruption, severity) block of N images is cut into cells of ``cell_size(H, W)``
  consecutive images (a function of the image size only); each cell is one ``corrupt`` call with its
  own generator, seeded by (seed, corruption, severity, cell index). So the bytes do not depend on
  how many threads or processes share the work, nor in which order the cells are made.
* Checksums: a file's ``sha256`` is the SHA-256 of its .npy header bytes followed by the SHA-256
  digests of its cells' bytes (in row order), so cells can be hashed in parallel, by the thread or
  process that wrote them, and verified the same way. SHA-256 (hashlib, ~0.8 GB/s per core).
* Writes that cannot half-happen: a file is written as ``NAME.npy.tmp``, preallocated to its full
  size first (``posix_fallocate``: a full disk fails before any compute, never as SIGBUS of a
  memory map), filled with ``os.pwrite`` and renamed when complete and fsynced.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

# Pixels per seed cell: 1,024 images at 32 px, 20 at 224 px. Part of the output format (_FORMAT).
CELL_PIXELS = 2**20


def cell_size(height: int, width: int) -> int:
    """Images per seed cell for images of ``height`` x ``width`` pixels."""
    return max(1, CELL_PIXELS // (height * width))


def cell_seed(seed: int, name: str, severity: int, cell: int) -> int:
    """The generator seed of one cell: stable across runs, machines and process counts."""
    digest = hashlib.sha256(f"make_c/{seed}/{name}/{severity}/{cell}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def row_ranges(blocks: int, n: int, cell: int) -> list[tuple[int, int]]:
    """(first row, end row) of every cell of a file of ``blocks`` blocks of ``n`` rows, in row order."""
    return [(b * n + s, b * n + min(s + cell, n)) for b in range(blocks) for s in range(0, n, cell)]


def header_bytes(shape: Sequence[int], dtype: np.dtype) -> bytes:
    """The .npy header of a C-ordered array of ``shape`` and ``dtype`` (what ``np.save`` writes)."""
    import io

    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    if len(repr(header)) < 65000:
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def tree_digest(header: bytes, cell_digests: Iterable[bytes]) -> str:
    """The file checksum: SHA-256 of the header followed by the cells' SHA-256 digests."""
    h = hashlib.sha256(header)
    for d in cell_digests:
        h.update(d)
    return h.hexdigest()


def cell_digest(rows: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(rows).data).digest()


def file_digest(path: Path, blocks: int, n: int, cell: int, pool=None) -> str | None:
    """The checksum of the .npy ``path`` laid out in ``blocks`` blocks of ``n`` rows; None if unreadable."""
    try:
        array = np.load(path, mmap_mode="r")
        offset = array.offset if isinstance(array, np.memmap) else None
    except (ValueError, OSError):
        return None
    if offset is None or array.shape[0] != blocks * n:
        return None
    with open(path, "rb") as f:
        header = f.read(offset)
    ranges = row_ranges(blocks, n, cell)
    digests = (pool.map if pool is not None else map)(lambda r: cell_digest(array[r[0]:r[1]]), ranges)
    return tree_digest(header, digests)


def verify_file(path: str | os.PathLike, entry: dict, blocks: int, n: int, cell: int, pool=None) -> bool:
    """True if ``path`` matches the checksum ``entry["sha256"]`` recorded by make_c."""
    return file_digest(Path(path), blocks, n, cell, pool) == entry.get("sha256")


def no_space_error(where: Path, needed: int, free: int | None = None) -> ValueError:
    free = shutil.disk_usage(where).free if free is None else free
    return ValueError(f"not enough disk space in {where}: make_c needs {needed / 1e6:,.1f} MB more, "
                      f"{free / 1e6:,.1f} MB are free; free some space or choose another out_dir")


def check_free_space(where: Path, needed: int) -> None:
    """ValueError saying how much is needed when the file system of ``where`` has less than ``needed``."""
    free = shutil.disk_usage(where).free
    if needed > free:
        raise no_space_error(where, needed, free)


def preallocate(path: Path, header: bytes, data_bytes: int) -> None:
    """Create ``path`` holding ``header`` and reserve ``data_bytes`` after it (ValueError if no space)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, header)
        try:
            os.posix_fallocate(fd, 0, len(header) + data_bytes)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            os.ftruncate(fd, len(header) + data_bytes)  # no fallocate here: a sparse file
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise no_space_error(path.parent, len(header) + data_bytes) from None
        raise
    os.close(fd)


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less than asked)."""
    while len(data):
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` through ``path.tmp``, fsynced and renamed; a full disk is a ValueError, no leftover."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise no_space_error(path.parent, array.nbytes) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
