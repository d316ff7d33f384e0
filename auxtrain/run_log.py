"""What a training run reports while it runs: step lines, TensorBoard scalars and ``model_best.pt``.

* Step lines (``--log-interval N``, timm-style): every N steps of an epoch one line on stdout,
  flushed at once so that it reaches a redirected log (a file, a pipe, a batch system) as it
  happens: the epoch's running loss and accuracy, clean images per second over the last N steps,
  the learning rate and the time left in the epoch. Shown unless a progress bar on a terminal
  already shows the same (``--progress`` with stdout a TTY).
* TensorBoard (``--logger tensorboard``): the same step numbers and every numeric column of each
  metrics.csv row, written by ``torch.utils.tensorboard`` to ``RUN_DIR/tensorboard``.
* ``model_best.pt`` (with ``--val-size``): the model of the epoch with the best validation
  accuracy, exported like ``model_plain.pt``, next to it; its metadata records the epoch.

:meth:`RunLog.steps` gives the epoch's :class:`StepLog`; the training loop tells it after each
optimiser step, and the ``sums`` the step accumulates (n, correct, loss) give the running numbers.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from auxtrain.run_dir import RunDir

__all__ = ["RunLog", "BestModel", "tensorboard_available", "TENSORBOARD_DIR", "BEST_MODEL"]

TENSORBOARD_DIR = RunDir.TENSORBOARD
BEST_MODEL = RunDir.BEST_MODEL


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be used (the ``tensorboard`` package is installed)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _value(sums: dict[str, Any], key: str) -> float:
    value = sums.get(key)
    return math.nan if value is None else float(value)  # float() also reads a 0-d tensor


class RunLog:
    """Step lines and TensorBoard scalars of one run (rank 0; elsewhere every call does nothing).

    ``interval`` 0 prints no step lines; ``logger`` "tensorboard" writes event files into
    ``run_path / "tensorboard"``; ``progress`` says whether a progress bar is shown.
    """

    def __init__(self, run_path: Path | None, *, interval: int, logger: str = "none", progress: bool = False,
                 epochs: int, resume: bool = False, enabled: bool = True, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        shown_bar = progress and getattr(self.stream, "isatty", lambda: False)()
        self.interval = interval if enabled and not shown_bar else 0
        self.epochs = epochs
        self.writer = None
        if enabled and logger == "tensorboard":
            if not tensorboard_available():
                raise ValueError("--logger tensorboard needs the tensorboard package: pip install "
                                 "tensorboard (or auxtrain[tensorboard]), or drop --logger")
            from torch.utils.tensorboard import SummaryWriter

            folder = Path(run_path) / TENSORBOARD_DIR
            if not resume:  # a replaced run's curves would pass for this run's
                for old in folder.glob("events.out.tfevents.*"):
                    old.unlink()
            self.writer = SummaryWriter(log_dir=str(folder))

    def steps(self, total: int, sums: dict[str, Any], epoch: int, *, skip: int = 0,
              lr: Callable[[int, int], float] | None = None) -> StepLog:
        """The epoch's :class:`StepLog`: a step line (and scalars) after every ``interval``-th batch.

        ``total`` is the epoch's number of batches; ``sums`` the dict the training step adds to
        (n, correct, loss); ``skip`` the batches trained before a resume; ``lr(step, steps)`` the
        learning rate.
        """
        return StepLog(self, total, sums, epoch, skip, lr)

    def epoch(self, row: dict[str, Any]) -> None:
        """The scalars of one metrics.csv row (the epoch line itself is printed by the CLI)."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, global_step=int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _step(self, epoch: int, step: int, total: int, sums: dict[str, Any], rate: float, left: float,
              lr: float) -> None:
        n = _value(sums, "n")
        loss = _value(sums, "loss") / n if n else math.nan
        acc = 100.0 * _value(sums, "correct") / n if n else math.nan
        if self.interval:
            print(f"epoch {epoch + 1}/{self.epochs}  step {step + 1:>{len(str(total))}}/{total} "
                  f"({100 * (step + 1) / total:3.0f}%)  loss {loss:.4f}  acc {acc:5.1f}%  "
                  f"{rate:7.1f} img/s  lr {lr:.4g}  ETA {_clock(left)}", file=self.stream, flush=True)
        if self.writer is not None:
            global_step = epoch * total + step + 1
            for key, value in (("loss", loss), ("acc", acc), ("images_per_s", rate), ("lr", lr)):
                if math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, global_step=global_step)


class StepLog:
    """Reports each ``interval``-th trained batch of one epoch (see :meth:`RunLog.steps`).

    The training loop calls :meth:`trained` after every optimiser step, in its own thread, so a
    line says what has really been trained, also when the next batch is built ahead.
    """

    def __init__(self, log: RunLog, total: int, sums: dict[str, Any], epoch: int, skip: int,
                 lr: Callable[[int, int], float] | None):
        self.log, self.total, self.sums, self.epoch, self.skip, self.lr = log, total, sums, epoch, skip, lr
        self.every = log.interval or (50 if log.writer is not None else 0)
        self.start = self.last_time = time.perf_counter()
        self.images = self.last_images = 0

    def trained(self, step: int, images: int) -> None:
        """Batch ``step`` (0-based) of ``images`` clean images has been trained."""
        if not self.every:
            return
        self.images += images
        if (step + 1) % self.every == 0:
            now = time.perf_counter()
            rate = (self.images - self.last_images) / max(now - self.last_time, 1e-9)
            done = step + 1 - self.skip
            left = (now - self.start) / done * (self.total - step - 1) if done > 0 else math.nan
            lr = self.lr(step, self.total) if self.lr is not None else math.nan
            self.log._step(self.epoch, step, self.total, self.sums, rate, left, lr)
            self.last_time, self.last_images = now, self.images


class BestModel:
    """``model_best.pt``: exported again whenever the validation accuracy beats the best so far.

    ``export(path)`` writes the model file (the same export as model_plain.pt). A resumed run
    continues from the accuracy recorded in the existing file; a new run removes a stale one.
    """

    def __init__(self, run_path: Path, *, resume: bool):
        self.path = Path(run_path) / BEST_MODEL
        self.best = -math.inf
        if resume and self.path.is_file():
            from auxtrain.export import read_model_file

            try:
                self.best = float(read_model_file(self.path)["meta"].get("best_val_acc", -math.inf))
            except (ValueError, OSError):  # unreadable: the next epoch writes a new one
                self.best = -math.inf
        elif not resume:
            self.path.unlink(missing_ok=True)

    def update(self, accuracy: float, epoch: int, export: Callable[[Path, dict[str, Any]], None]) -> bool:
        """Export via ``export(path, meta)`` if ``accuracy`` is a new best; True when it was."""
        if not math.isfinite(accuracy) or accuracy <= self.best:
            return False
        self.best = accuracy
        export(self.path, {"best_val_acc": accuracy, "best_epoch": epoch})
        return True

