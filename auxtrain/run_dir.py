"""RunDir: the directory a training run writes, safe against silent overwrites and crashes.

Layout::

    config.yaml          resolved config, seed, library versions, git commit (if any)
    metrics.csv          one row per finished epoch
    checkpoint_last.pt   everything needed to resume (written atomically every epoch)
    model_plain.pt       the exported plain model
    report.csv/.md/.png  robustness report (when evaluation runs)

Every file is written to a temporary name and moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from auxtrain.errors import RunDirError, WriteError, describe_os_error, free_bytes, is_disk_full
from auxtrain.losses import LOSS_TERMS
from auxtrain.run_lock import LOCK_NAME, RunLock

__all__ = ["RunDir", "RunLock", "atomic_write_bytes", "atomic_write_text", "environment_info",
           "METRIC_COLUMNS"]

# Columns of metrics.csv, in order; loss terms a run does not use are left empty.
METRIC_COLUMNS = ("epoch", "lr", "stage", "loss", *LOSS_TERMS, "train_acc", "test_acc", "seconds")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    On any failure the temporary file is removed and ``path`` is left as it was; an OSError becomes
    a :class:`~auxtrain.errors.WriteError` naming ``path`` (on a full disk: the space it needs).
    A disk without room for ``data`` is refused before anything is written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    free = free_bytes(path.parent)
    if free is not None and len(data) > free:
        raise WriteError(f"cannot write {path}: the disk is full (it needs {_size(len(data))}, "
                         f"{_size(free)} free); free some space or pass a path on another disk, then "
                         "run the command again", errno.ENOSPC, str(path))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # also Ctrl-C: never leave FILE.tmp behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _write_error(path, exc, len(data)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _size(n: int) -> str:
    """``n`` bytes for a message: 1.2 MB, 340 kB, 12 bytes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _write_error(path: Path, exc: OSError, size: int) -> WriteError:
    """``exc`` (raised writing ``size`` bytes to ``path``) as a WriteError that names the file and the fix."""
    if is_disk_full(exc):
        free = free_bytes(path.parent)
        message = (f"cannot write {path}: the disk is full (it needs {_size(size)}"
                   + (f", {_size(free)} free" if free is not None else "")
                   + "); nothing half-written was left. Free some space or pass a path on another disk, "
                   "then run the command again")
    else:
        message = describe_os_error(exc, "cannot write")
    return WriteError(message, exc.errno, exc.filename or str(path))


def _git_commit() -> str | None:
    """Commit hash of the auxtrain source tree, or None outside a git checkout."""
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment_info() -> dict[str, Any]:
    """Versions of Python, torch, torchvision, numpy and auxtrain, the host and the git commit."""
    import numpy
    import torch

    from auxtrain import __version__

    info: dict[str, Any] = {
        "auxtrain": __version__, "python": sys.version.split()[0], "torch": str(torch.__version__),
        "numpy": numpy.__version__, "platform": platform.platform(), "git_commit": _git_commit(),
    }
    try:
        import torchvision
        info["torchvision"] = str(torchvision.__version__)
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    return info


class RunDir:
    """A run directory.

    ``RunDir(path)`` refuses a directory that exists and is not empty, unless ``resume`` (continue
    the run in it; it must hold ``checkpoint_last.pt``) or ``overwrite`` (replace the previous run
    in it: only a folder recognised as an auxtrain run by its own files, and only its files are
    removed). It refuses the current folder, and a folder another process is writing a run in.
    Nothing is written until ``prepare()`` is called, so a run that fails its checks leaves the
    directory untouched; ``prepare()`` takes the directory's lock (:class:`~auxtrain.run_lock.RunLock`)
    for the run's life, until ``release()``.
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.csv"
    CHECKPOINT = "checkpoint_last.pt"
    MODEL = "model_plain.pt"
    BEST_MODEL = "model_best.pt"  # with --val-size (auxtrain.run_log.BestModel)
    TENSORBOARD = "tensorboard"   # with --logger tensorboard: its event files
    REPORT_FILES = ("report.csv", "report.md", "report.png", "errors.csv", "errors_bn_adapted.csv",
                    "accuracy.csv", "unaggregated_results.csv", "summary.json")
    # The generated -C set a run's evaluation caches (auxtrain.evaluation.CACHE_DIR) and its files.
    EVAL_CACHE = "corrupted_test"
    EVAL_CACHE_FILES = ("*.npy", "*.json", "*.tmp")

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: pass --resume or --overwrite, "
                             "not both")
        if str(path).strip() in ("", ".") or Path(path).resolve() == Path.cwd().resolve():
            raise RunDirError(f"--out {str(path)!r} is the current folder; a run needs a folder of its own, "
                              "e.g. --out runs/NAME")
        self.path = Path(path)
        self.resume = resume
        self.overwrite = overwrite
        self._lock = RunLock(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file; pass a directory path")
        if self.path.is_dir() and self._lock.holder() is not None:
            self._lock.acquire()  # raises RunLockedError naming the process (waits a moment first)
            self._lock.release()  # it ended just now: the directory is free again
        if resume and not self.checkpoint_path.is_file():
            raise RunDirError(self._no_checkpoint_message())
        nonempty = self.path.is_dir() and any(p.name != LOCK_NAME for p in self.path.iterdir())
        if nonempty and not (resume or (overwrite and self._is_run())):
            raise RunDirError(self._occupied_message())

    def _started_run(self) -> bool:
        """Whether a run started here: its config.yaml (written first) or metrics.csv, by their content."""
        try:
            if self.config_path.is_file():
                with open(self.config_path, encoding="utf-8") as f:
                    doc = yaml.safe_load(f)
                if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
                    return True
            if self.metrics_path.is_file():
                with open(self.metrics_path, encoding="utf-8") as f:
                    return f.readline().strip() == ",".join(METRIC_COLUMNS)
        except (OSError, ValueError, yaml.YAMLError):  # unreadable: not recognisably ours
            return False
        return False

    def _is_run(self) -> bool:
        """Whether the folder holds an auxtrain run (so that --overwrite may replace it)."""
        return self.checkpoint_path.is_file() or self._started_run()

    def _no_checkpoint_message(self) -> str:
        """Why ``--resume`` cannot work here, and the command that can."""
        if not self.path.is_dir():
            return f"cannot resume: --out {self.path} does not exist; start the run without --resume"
        if self._started_run():  # but stopped before the end of its first epoch
            return (f"cannot resume: the run in {self.path} stopped before its first checkpoint "
                    f"({self.CHECKPOINT} does not exist), so there is nothing to continue; start it again "
                    "with the same options and --overwrite instead of --resume")
        if any(p.name != LOCK_NAME for p in self.path.iterdir()):
            return (f"cannot resume: --out {self.path} holds no auxtrain run; pass the --out of the run "
                    "to continue")
        return f"cannot resume: --out {self.path} is empty; start the run without --resume"

    def _occupied_message(self) -> str:
        """Why a new run cannot start in the non-empty directory, and what to type instead."""
        if self.checkpoint_path.is_file():
            return (f"--out {self.path} already holds a run; pass --resume to continue it, --overwrite to "
                    "replace it, or another --out")
        if self._started_run():
            return (f"--out {self.path} holds a run that stopped before its first checkpoint (no "
                    f"{self.CHECKPOINT}: nothing to resume); pass --overwrite to start it again, or "
                    "another --out")
        return (f"--out {self.path} already exists and holds files that are not an auxtrain run (--overwrite "
                "replaces only a previous run, never other files); pass another --out (a new or empty "
                "folder)")

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    def prepare(self, completed_epochs: int | None = None) -> None:
        """Create the directory and take its lock; with ``overwrite`` remove the previous run's files.

        Call it when training really starts (every option and input checked): only then is the
        old run replaced. On resume, rows of metrics.csv after the checkpoint's ``completed_epochs``
        are dropped, since those epochs will be run again.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(describe_os_error(exc, "cannot create --out"), exc.errno, exc.filename) from exc
        self._lock.acquire()
        if self.overwrite and not self.resume:
            self._remove_previous_run()
        if self.resume and completed_epochs is not None and self.metrics_path.is_file():
            rows = [r for r in self.read_metrics() if int(r["epoch"]) <= completed_epochs]
            self._write_metrics(rows)

    def release(self) -> None:
        """Give up the directory's lock (taken by ``prepare``); safe to call more than once."""
        self._lock.release()

    def _remove_previous_run(self) -> None:
        """Delete the files an auxtrain run writes (and their .tmp leftovers), nothing else."""
        names = (self.CONFIG, self.METRICS, self.CHECKPOINT, self.MODEL, self.BEST_MODEL, *self.REPORT_FILES)
        for name in names:
            for victim in (self.path / name, self.path / f"{name}.tmp"):
                victim.unlink(missing_ok=True)
        for folder, patterns in ((self.EVAL_CACHE, self.EVAL_CACHE_FILES),
                                 (self.TENSORBOARD, ("events.out.tfevents.*",))):
            folder = self.path / folder
            if folder.is_dir():
                for pattern in patterns:
                    for victim in folder.glob(pattern):
                        if victim.is_file():
                            victim.unlink()
                with contextlib.suppress(OSError):  # left in place if it holds other files
                    folder.rmdir()

    def write_config(self, config: dict[str, Any], **extra: Any) -> None:
        """Write config.yaml: the resolved ``config``, ``extra`` entries and the environment."""
        doc = {"config": config, **extra, "environment": environment_info()}
        atomic_write_text(self.config_path, yaml.safe_dump(doc, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The ``config`` mapping of config.yaml; RunDirError naming the file if it is damaged."""
        fix = (f"restore it from a backup, or start the run again with --overwrite --out {self.path}")
        try:
            with open(self.config_path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
            where = (f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark and problem
                     else " ".join(str(exc).split()))
            raise RunDirError(f"{self.config_path} is not valid YAML ({where}); {fix}") from None
        except UnicodeDecodeError:
            raise RunDirError(f"{self.config_path} is not a UTF-8 text file; {fix}") from None
        config = doc.get("config", {}) if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            raise RunDirError(f"{self.config_path} is not an auxtrain run config (it needs a 'config:' "
                              f"mapping of options); {fix}")
        return dict(config)

    def read_metrics(self) -> list[dict[str, str]]:
        """Rows of metrics.csv as dicts of strings (empty list if the file does not exist)."""
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one epoch's row to metrics.csv (rewritten atomically; the file is small)."""
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics columns {sorted(unknown)}; valid: {list(METRIC_COLUMNS)}")
        self._write_metrics([*self.read_metrics(), row])

    def _write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(METRIC_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _fmt(r.get(k)) for k in METRIC_COLUMNS})
        atomic_write_text(self.metrics_path, buf.getvalue())


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
