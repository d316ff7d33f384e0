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

import csv
import io
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from auxtrain.losses import LOSS_TERMS

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_text", "environment_info", "METRIC_COLUMNS"]

# Columns of metrics.csv, in order; loss terms a run does not use are left empty.
METRIC_COLUMNS = ("epoch", "lr", "stage", "loss", *LOSS_TERMS, "train_acc", "test_acc", "seconds")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


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
    the run in it; it must hold ``checkpoint_last.pt``) or ``overwrite`` (delete the previous run's
    files first). Nothing is written until ``prepare()`` is called, so a run that fails its checks
    leaves the directory untouched.
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.csv"
    CHECKPOINT = "checkpoint_last.pt"
    MODEL = "model_plain.pt"
    REPORT_FILES = ("report.csv", "report.md", "report.png", "errors.csv", "accuracy.csv",
                    "unaggregated_results.csv", "summary.json")

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: pass --resume or --overwrite, "
                             "not both")
        self.path = Path(path)
        self.resume = resume
        self.overwrite = overwrite
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {self.path} is a file; pass a directory path")
        if resume and not self.checkpoint_path.is_file():
            raise ValueError(self._no_checkpoint_message())
        nonempty = self.path.is_dir() and any(self.path.iterdir())
        if nonempty and not (resume or overwrite):
            raise ValueError(self._occupied_message())

    def _started_run(self) -> bool:
        """Whether a run started here: its config.yaml (written first) or metrics.csv exists."""
        return any((self.path / n).is_file() for n in (self.CONFIG, self.METRICS))

    def _no_checkpoint_message(self) -> str:
        """Why ``--resume`` cannot work here, and the command that can."""
        if not self.path.is_dir():
            return f"cannot resume: --out {self.path} does not exist; start the run without --resume"
        if self._started_run():  # but stopped before the end of its first epoch
            return (f"cannot resume: the run in {self.path} stopped before its first checkpoint "
                    f"({self.CHECKPOINT} does not exist), so there is nothing to continue; start it again "
                    "with the same options and --overwrite instead of --resume")
        if any(self.path.iterdir()):
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
        return (f"--out {self.path} already exists and holds files that are not an auxtrain run; pass "
                "another --out, or --overwrite to write the run next to them")

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
        """Create the directory; with ``overwrite`` remove the known run files first.

        On resume, rows of metrics.csv after the checkpoint's ``completed_epochs`` are dropped,
        since those epochs will be run again.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite and not self.resume:
            for name in (self.CONFIG, self.METRICS, self.CHECKPOINT, self.MODEL, *self.REPORT_FILES):
                (self.path / name).unlink(missing_ok=True)
        if self.resume and completed_epochs is not None and self.metrics_path.is_file():
            rows = [r for r in self.read_metrics() if int(r["epoch"]) <= completed_epochs]
            self._write_metrics(rows)

    def write_config(self, config: dict[str, Any], **extra: Any) -> None:
        """Write config.yaml: the resolved ``config``, ``extra`` entries and the environment."""
        doc = {"config": config, **extra, "environment": environment_info()}
        atomic_write_text(self.config_path, yaml.safe_dump(doc, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The ``config`` mapping of config.yaml."""
        with open(self.config_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        return dict(doc.get("config", {}))

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
