"""The project's exception types: expected failures that the CLI prints as one line, exit code 2.

Every error here is raised with a message that says what is wrong, which file or flag, and the fix.
The command line prints ``auxtrain: error: <message>`` for them (and for OSError, see
:func:`describe_os_error`); anything else is a bug and keeps its traceback. Each type is also a
ValueError (or an OSError), so library callers that catch those keep working.
"""

from __future__ import annotations

import errno
import os

__all__ = ["AuxtrainError", "DataError", "DownloadError", "CheckpointError", "RunDirError", "RunLockedError",
           "WriteError", "describe_os_error", "clean_worker_message", "is_disk_full", "free_bytes"]


class AuxtrainError(Exception):
    """Base of the expected failures: a bad input, file or environment, not a bug."""


class DataError(AuxtrainError, ValueError):
    """A dataset file cannot be read: missing pieces, truncated, corrupt, undecodable or unsafe."""


class DownloadError(DataError, RuntimeError):
    """A dataset could not be downloaded (no network, a bad archive)."""


class CheckpointError(AuxtrainError, ValueError):
    """A training checkpoint cannot be read, or does not fit the run that resumes it."""


class RunDirError(AuxtrainError, ValueError):
    """A run directory cannot be used: not a run, a damaged config.yaml, the current folder, ..."""


class RunLockedError(RunDirError):
    """Another live process holds the run directory's lock."""


class WriteError(AuxtrainError, OSError):
    """A file could not be written (full disk, read-only folder, ...); nothing half-written is left.

    ``str()`` is the message alone; ``errno`` and ``filename`` are those of the OSError behind it.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.message, self.errno, self.filename = message, errno, filename

    def __new__(cls, message: str, errno: int | None = None, filename: str | None = None) -> WriteError:
        return super().__new__(cls, message)  # not OSError's (errno, strerror, filename) parsing

    def __str__(self) -> str:
        return self.message


def describe_os_error(exc: OSError, action: str = "cannot use") -> str:
    """``exc`` as ``"<action> FILE: <reason>; <fix>"``, the fix chosen by its errno."""
    name = exc.filename if exc.filename is not None else "the file"
    reason = exc.strerror or str(exc)
    fixes = {
        errno.ENOSPC: "free some space on that disk (or pass a path on another disk), then run again",
        errno.EDQUOT: "free some space within your disk quota and run the command again",
        errno.EROFS: "the file system is read-only: pass a path on a writable disk",
        errno.EACCES: "you may not write or read there: fix its permissions or pass another path",
        errno.EPERM: "you may not write or read there: fix its permissions or pass another path",
        errno.ENOTDIR: "a part of that path is a file, not a folder: pass another path",
        errno.EISDIR: "it is a folder: pass a file",
        errno.ENOENT: "check the path",
        errno.EEXIST: "remove it or pass another path",
        errno.EIO: "the disk or network file system reported an I/O error: check it and run again",
        errno.ENAMETOOLONG: "pass a shorter path",
    }
    fix = fixes.get(exc.errno, "check the path and run the command again")
    return f"{action} {name}: {reason}; {fix}"


def clean_worker_message(message: str) -> str:
    """The original error line of a DataLoader worker's re-raised message, without its traceback.

    torch re-raises a worker's exception with ``"Caught X in DataLoader worker ...\\nOriginal
    Traceback ..."``; the user needs only the last line, and without the ``module.Type: `` prefix.
    """
    if "Original Traceback" not in message:
        return message
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    last = lines[-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and " " not in head else last


def is_disk_full(exc: OSError) -> bool:
    """Whether ``exc`` says that the disk (or the quota) is full."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space (bytes, for an unprivileged user) on the disk holding ``path``; None if unknown."""
    import shutil

    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
