"""Every time-dependent number of a run: learning rate, warm-up, stage, tying and companion weights.

The authors' CIFAR recipe runs 210 epochs, divides the learning rate by 10 at epochs 60, 140 and
180, and switches to stage two (weight tying on) at epoch 180. For another number of epochs every
point is scaled by the same fraction, so a 21-epoch run drops at 6, 14 and 18. Very short runs
are the exception: no LR drop comes before epoch 1 (a 1-epoch run trains at the full LR), and
from 2 epochs on stage two gets at least the last epoch (2 epochs: from 1, 3 epochs: from 2).
Deep-supervision companions fade linearly to 0 over the run (Wang et al. 2015) unless their decay
is off.

Stage-two strength under other schedules: the pull of the weight-tying penalty on the heads per
SGD step is ``lr * gamma * 2 * (theta_0 - theta_j)``, so what the authors tuned is the product
``lr * gamma`` at the LR their step schedule has in stage two (0.1% of the base LR). A cosine
schedule is still at 4.95% of the base LR at 6/7 of the run, so the same ``gamma`` would pull
about 50 times harder and merge the heads almost at once. With ``tying_scale="step_lr"`` (the
default) the tying weight is ``gamma * step_lr(epoch) / lr(epoch)``: the product ``lr * weight``
equals the step schedule's at every epoch of stage two, whatever the schedule; the step schedule
itself is unchanged (the ratio is 1). Scaling was chosen over a ramp because it matches the
authors' recipe exactly, adds no hyperparameter, and stays bounded: the weight grows as the
cosine LR falls, but the per-step pull it causes is constant. ``tying_scale="none"`` applies
``gamma`` as given (the behaviour before; kept for the ablation).

All of it is pure functions of the position in the run (epoch, step), gathered in
:class:`TrainingSchedule`, so a checkpoint needs no schedule state and a resumed run gets the
same values. The training loop asks the schedule; the losses only take the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["Schedule", "SCHEDULES", "TyingScale", "TYING_SCALES", "TrainingSchedule", "step_milestones",
           "learning_rate", "warmup_factor",
           "stage_two_epoch", "is_stage_two", "decay_weight"]

Schedule = Literal["step", "cosine", "constant"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
TyingScale = Literal["step_lr", "none"]
TYING_SCALES: tuple[str, ...] = get_args(TyingScale)

# Fractions of the run at which the authors' recipe divides the LR by 10 (60, 140, 180 of 210).
_STEP_FRACTIONS = (60 / 210, 140 / 210, 180 / 210)
# Fraction of the run after which stage two starts (epoch 180 of 210).
_STAGE_TWO_FRACTION = 180 / 210


def _check_epochs(epochs: int) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")


def step_milestones(epochs: int) -> list[int]:
    """Epochs (0-based, first epoch with the lower LR) of the step drops, scaled from 60/140/180 of 210.

    Each is at least 1: a drop at epoch 0 would start the run at a tenth of the LR (1 epoch gives
    [1, 1, 1], no drop inside the run). Only a 1-epoch run rounds a milestone to 0.
    """
    _check_epochs(epochs)
    return [max(1, round(f * epochs)) for f in _STEP_FRACTIONS]


def learning_rate(epoch: int, *, base_lr: float, epochs: int, schedule: str = "step",
                  drop: float = 0.1) -> float:
    """Learning rate for 0-based ``epoch`` of ``epochs``.

    ``step``: ``base_lr * drop**k`` after the k-th milestone of ``step_milestones``; ``cosine``:
    half-cosine from ``base_lr`` to 0 over the run (evaluated at the start of each epoch);
    ``constant``: ``base_lr`` throughout.
    """
    _check_epochs(epochs)
    if schedule == "step":
        return base_lr * drop ** sum(epoch >= m for m in step_milestones(epochs))
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "constant":
        return base_lr
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def warmup_factor(epoch: int, step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """Linear warm-up multiplier in (0, 1] for batch ``step`` of 0-based ``epoch``.

    Rises from 1/W to 1 over the first ``warmup_epochs`` epochs (W = their number of steps), then
    stays 1. A function of the position only, so resumed runs get the same values.
    """
    total = warmup_epochs * steps_per_epoch
    if total <= 0:
        return 1.0
    return min(1.0, (epoch * steps_per_epoch + step + 1) / total)


def stage_two_epoch(epochs: int, start: int | None = None) -> int:
    """First epoch (0-based) of stage two: ``start`` if given, else 6/7 of ``epochs`` (180 of 210).

    The default is at most the last epoch (``epochs - 1``) from 2 epochs on, so that stage two
    always runs; 6/7 of the run rounds to its end only for 2 and 3 epochs (they start at 1 and 2).
    A 1-epoch run has no stage two by default.
    """
    _check_epochs(epochs)
    if start is None:
        default = round(_STAGE_TWO_FRACTION * epochs)
        return min(default, epochs - 1) if epochs >= 2 else default
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"stage_two_start must be a non-negative epoch number or None, got {start!r}")
    return start


def is_stage_two(epoch: int, epochs: int, start: int | None = None) -> bool:
    """Whether 0-based ``epoch`` belongs to stage two (weight tying switched on)."""
    return epoch >= stage_two_epoch(epochs, start)


def decay_weight(alpha0: float, epoch: float, total_epochs: float, factor: float = 1.0) -> float:
    """Linearly decayed weight ``alpha0 * factor * (1 - epoch / total_epochs)``, floored at 0.

    Wang et al. (2015) use ``alpha0 = 0.3, factor = 1``; DSN's schedule is ``factor = 0.1``.
    ``epoch`` may be fractional (e.g. ``epoch + step / steps_per_epoch``).
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return alpha0 * factor * max(0.0, 1.0 - epoch / total_epochs)


@dataclass(frozen=True)
class TrainingSchedule:
    """The schedule of one run; every method is a pure function of the position in the run.

    Args:
        epochs: length of the run.
        base_lr: learning rate at the start (after warm-up).
        kind: "step", "cosine" or "constant" (see :func:`learning_rate`).
        warmup_epochs: linear warm-up length in epochs (0 = none).
        stage_two_start: first 0-based epoch of stage two, below ``epochs`` unless ``gamma`` is 0;
            None = 6/7 of the run (see :func:`stage_two_epoch`).
        gamma: weight-tying coefficient of stage two (0 in stage one).
        companion_weight: weight of the deep-supervision companions at the start.
        companion_decay: fade the companion weight linearly to 0 over the run.
        tying_scale: "step_lr" scales ``gamma`` so that ``lr * tying weight`` matches the step
            schedule's (see the module docstring); "none" uses ``gamma`` as given.
    """

    epochs: int
    base_lr: float
    kind: str = "step"
    warmup_epochs: float = 0.0
    stage_two_start: int | None = None
    gamma: float = 1.0
    companion_weight: float = 0.3
    companion_decay: bool = True
    tying_scale: str = "step_lr"

    def __post_init__(self) -> None:
        _check_epochs(self.epochs)
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if self.tying_scale not in TYING_SCALES:
            raise ValueError(f"tying_scale must be one of {', '.join(TYING_SCALES)}, "
                             f"got {self.tying_scale!r}")
        start = stage_two_epoch(self.epochs, self.stage_two_start)  # validates a given start: >= 0
        if self.stage_two_start is not None and self.gamma != 0 and start >= self.epochs:
            raise ValueError(f"stage_two_start {start} is not an epoch of the {self.epochs}-epoch run "
                             f"(0 to {self.epochs - 1}): stage two would never start; pass None for the "
                             "default, or gamma=0 for no weight tying")

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch`` before warm-up."""
        return learning_rate(epoch, base_lr=self.base_lr, epochs=self.epochs, schedule=self.kind)

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """The learning rate of batch ``step`` of 0-based ``epoch``, warm-up included."""
        return self.epoch_lr(epoch) * warmup_factor(epoch, step, steps_per_epoch, self.warmup_epochs)

    def stage(self, epoch: int) -> int:
        """1 or 2: the stage of 0-based ``epoch``."""
        return 2 if is_stage_two(epoch, self.epochs, self.stage_two_start) else 1

    def tying_weight(self, epoch: int) -> float:
        """Weight of the weight-tying penalty: 0 in stage one; in stage two ``gamma``, times
        ``step_lr(epoch) / lr(epoch)`` with ``tying_scale="step_lr"`` under a non-step schedule."""
        if self.stage(epoch) != 2:
            return 0.0
        if self.tying_scale == "none" or self.kind == "step":
            return self.gamma
        step_lr = learning_rate(epoch, base_lr=self.base_lr, epochs=self.epochs, schedule="step")
        return self.gamma * step_lr / self.epoch_lr(epoch)

    def companion_weight_at(self, epoch: float) -> float:
        """Weight of the companion losses at ``epoch`` (decayed linearly when ``companion_decay``)."""
        if not self.companion_decay:
            return self.companion_weight
        return decay_weight(self.companion_weight, epoch, self.epochs)
