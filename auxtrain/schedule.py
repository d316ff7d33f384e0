"""Learning-rate schedule and stage switch of the two-stage recipe, as pure functions of the epoch.

The authors' CIFAR recipe runs 210 epochs, divides the learning rate by 10 at epochs 60, 140 and
180, and switches to stage two (weight tying on) at epoch 180. For another number of epochs every
point is scaled by the same fraction, so a 21-epoch run drops at 6, 14 and 18. Being pure functions
of the epoch, the schedule needs no state in a checkpoint and a resumed run gets the same values.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

__all__ = ["Schedule", "SCHEDULES", "step_milestones", "learning_rate", "warmup_factor", "stage_two_epoch",
           "is_stage_two"]

Schedule = Literal["step", "cosine", "constant"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)

# Fractions of the run at which the authors' recipe divides the LR by 10 (60, 140, 180 of 210).
_STEP_FRACTIONS = (60 / 210, 140 / 210, 180 / 210)
# Fraction of the run after which stage two starts (epoch 180 of 210).
_STAGE_TWO_FRACTION = 180 / 210


def _check_epochs(epochs: int) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")


def step_milestones(epochs: int) -> list[int]:
    """Epochs (0-based, first epoch with the lower LR) of the step drops, scaled from 60/140/180 of 210."""
    _check_epochs(epochs)
    return [round(f * epochs) for f in _STEP_FRACTIONS]


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
    """First epoch (0-based) of stage two: ``start`` if given, else 6/7 of ``epochs`` (180 of 210)."""
    _check_epochs(epochs)
    if start is None:
        return round(_STAGE_TWO_FRACTION * epochs)
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"stage_two_start must be a non-negative epoch number or None, got {start!r}")
    return start


def is_stage_two(epoch: int, epochs: int, start: int | None = None) -> bool:
    """Whether 0-based ``epoch`` belongs to stage two (weight tying switched on)."""
    return epoch >= stage_two_epoch(epochs, start)
