"""RunLock: one process at a time writes a run directory.

The lock is the file ``DIR/.auxtrain.lock``, holding the owner's process id (for the message a
second process prints). Where ``fcntl`` exists (Linux, macOS) the lock itself is ``flock`` on that
file: the kernel drops it when the process ends in any way (SIGKILL included), so a lock file left
behind by a dead run is never in the way. Elsewhere the file is created with ``O_EXCL``; one whose
process is no longer running is stale and taken over.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from auxtrain.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".auxtrain.lock"
_WAIT_SECONDS = 1.0  # a lock taken a moment ago (or a peek by holder()) may be gone after this


class RunLock:
    """The exclusive lock of the run directory ``directory``: ``acquire()`` it for the run's life."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> int | None:
        """Process id of the live process that holds the lock (0 if unknown), None if it is free.

        Creates nothing: a directory without a lock file is free.
        """
        if not self.path.is_file():
            return None
        if fcntl is None:
            pid = self._read_pid()
            return pid if pid is not None and _pid_alive(pid) else None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts only with a holder's LOCK_EX
        except BlockingIOError:
            return self._read_pid() or 0
        finally:
            os.close(fd)  # also drops the shared lock
        return None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunLockedError naming the process that holds it."""
        if self._fd is not None:
            return self
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            fd = self._try_acquire()
            if fd is not None:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            if time.monotonic() > deadline:
                raise RunLockedError(self._locked_message())
            time.sleep(0.05)

    def release(self) -> None:
        """Give the lock up and remove the lock file (a no-op when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still held: a process that opened the old file notices
        os.close(self._fd)
        self._fd = None

    def _try_acquire(self) -> int | None:
        """The locked file's descriptor, or None if another process holds the lock now."""
        if fcntl is None:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self._read_pid()
                if (not _pid_alive(pid)) if pid is not None else self._age() > 2 * _WAIT_SECONDS:
                    # stale: its process is gone (a file without a pid is one being written, unless old)
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder may have released (and removed) the file between our open and flock
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return fd

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _read_pid(self) -> int | None:
        try:
            return int(self.path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def _locked_message(self) -> str:
        pid = self._read_pid()
        who = f"another auxtrain process (pid {pid})" if pid else "another auxtrain process"
        return (f"--out {self.directory} is in use by {who}, which is writing a run there; wait for it to "
                "finish (or stop it), or pass another --out")

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (without signalling it)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x100000, False, pid)  # SYNCHRONIZE
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT: still running
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
