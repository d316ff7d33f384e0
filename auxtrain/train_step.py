"""One training step, and the batches it is fed: inputs -> forward (stacked or separate) -> loss -> SGD.

A *mode* supplies two callables and the step does the rest:

- ``make_inputs(images, generator) -> [clean, view_1, ..., view_K]``: the augmented clean batch
  and its views (uint8 or float in [0, 1], same shape each) from a clean uint8 batch on the
  device, every random draw from ``generator``;
- ``loss(out, target) -> (total, terms)``: the loss of the model's output on those inputs (an
  :class:`~auxtrain.auxiliary.AuxiliaryOutput`) against the B clean labels, with the named,
  unweighted terms to log.

:class:`TrainStep` runs the inputs through the model as ONE stacked batch (fast on GPUs) or as
K+1 passes of B images, each routed to its own selective-BN domain (faster on CPUs, whose caches
hold a B-image pass much better); with selective BN both give the same losses, gradients and
running statistics. :class:`Batches` builds the next batch's inputs, in a background thread while
the current step computes (by default on GPUs only) or in the step's thread, drawing from the one
generator in the same order either way, so the views, and a resumed run, stay bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["LossFn", "InputsFn", "TrainStep", "StepResult", "Batches", "can_separate", "use_separate_passes",
           "use_channels_last", "use_views_ahead"]

LossFn = Callable[[Any, Tensor], tuple[Tensor, dict[str, Tensor]]]
InputsFn = Callable[[Tensor, torch.Generator], list[Tensor]]


def can_separate(net: Any) -> bool:
    """Whether separate passes give ``net``'s stacked numbers: selective BN with auxiliary heads.

    Without selective BN (the ablation) or without heads (standard training, the augment
    baseline) the copies share one set of batch statistics, which only the stacked pass computes.
    """
    return bool(getattr(net, "selective_bn", False) and getattr(net, "num_branches", 0) > 0)


def use_separate_passes(option: str, device: torch.device, net: Any) -> bool:
    """``--domain-passes``: ``auto`` = separate passes on CPU, one stacked pass elsewhere (CUDA)."""
    if option == "separate" and not can_separate(net):
        raise ValueError("--domain-passes separate needs auxiliary heads with selective BN (--mode "
                         "auxiliary, --corruptions other than none, no --no-selective-bn); use "
                         "--domain-passes auto")
    return can_separate(net) and (option == "separate" or (option == "auto" and device.type == "cpu"))


def use_channels_last(option: str | bool, device: torch.device) -> bool:
    """``--channels-last``: ``auto`` = on for CPU and CUDA convolutions (faster on both), else off."""
    if isinstance(option, bool):
        return option
    return option == "on" or (option == "auto" and device.type in ("cpu", "cuda"))


def use_views_ahead(option: str, device: torch.device) -> bool:
    """``--views-ahead``: ``auto`` = build the next batch in a background thread on GPUs only.

    On a GPU the step leaves the CPU idle, so the thread's work is free. On a CPU the step's
    intra-op threads already use every core and the thread competes with them: on 2 cores it
    made the resnet20 step 23-31% slower, against at most 10% for the same views built in the
    step's thread (benchmarks/results/auxiliary_step_speed.md).
    """
    return option == "on" or (option == "auto" and device.type != "cpu")


@dataclass
class StepResult:
    """What one step computed; ``finite`` False means the loss was NaN or infinite and nothing was updated."""

    loss: Tensor
    terms: dict[str, Tensor]
    out: Any                       # the model's output (AuxiliaryOutput); out.main starts with the clean rows
    finite: bool


@dataclass
class TrainStep:
    """Forward, loss, backward and optimiser update of one batch of inputs (see the module docstring).

    Args:
        model: what is called: the AuxiliaryModel, or its DDP / compiled wrapper.
        optimizer, scaler: the optimiser and the AMP gradient scaler (disabled unless fp16).
        autocast: ``torch.autocast`` keywords for the forward pass and the loss.
        channels_last: feed the inputs in channels-last memory format.
        separate: one pass per chunk (``[clean, view_1, ...]``) instead of the stacked batch.
    """

    model: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    autocast: dict[str, Any]
    channels_last: bool = False
    separate: bool = False

    def format(self, images: Tensor) -> Tensor:
        """``images`` in the step's memory format (the model normalises them itself)."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def __call__(self, inputs: list[Tensor], target: Tensor, loss: LossFn) -> StepResult:
        x: Tensor | list[Tensor]
        x = [self.format(v) for v in inputs] if self.separate else self.format(torch.cat(inputs))
        with torch.autocast(**self.autocast):
            out = self.model(x)
            total, terms = loss(out, target)
        if not torch.isfinite(total):
            return StepResult(total, terms, out, finite=False)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return StepResult(total, terms, out, finite=True)


class Batches:
    """``(step, inputs, target)`` for the batches of ``loader`` from ``skip`` on, inputs built ahead.

    The inputs of batch n+1 (``make_inputs`` on the device) are built in one background thread
    while the caller trains on batch n; torch ops release the GIL, so this overlaps. The batches
    are built strictly in order and only there, so ``generator`` is drawn from exactly as by a
    plain loop. Batches before ``skip`` (trained before an interruption) are read and dropped
    without a draw. After leaving the loop early, :meth:`rewind` waits for the thread and puts
    ``generator`` back to its state before the last batch handed out (the first untrained one),
    which is what a mid-epoch checkpoint must save. ``background=False`` builds in the caller's
    thread (same numbers).
    """

    def __init__(self, loader, make_inputs: InputsFn, generator: torch.Generator, device: torch.device, *,
                 skip: int = 0, background: bool = True) -> None:
        self.loader, self.make_inputs, self.generator, self.device = loader, make_inputs, generator, device
        self.skip, self.background = skip, background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._state: Tensor | None = None  # generator state before the batch last handed out

    def __len__(self) -> int:
        return len(self.loader)

    def _load(self, it: Iterator, step: int):
        try:
            images, target = next(it)
        except StopIteration:
            return None
        if step < self.skip:
            return step, None, None, None
        cuda = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        with cuda, torch.no_grad():  # grad mode and the current CUDA device are per thread
            state = self.generator.get_state()
            images = images.to(self.device, non_blocking=True)
            target = target.to(self.device, non_blocking=True)
            return step, self.make_inputs(images, self.generator), target, state

    def __iter__(self) -> Iterator[tuple[int, list[Tensor], Tensor]]:
        it = iter(self.loader)
        if not self.background:
            step = 0
            while (item := self._load(it, step)) is not None:
                step += 1
                if item[1] is not None:
                    self._state = item[3]
                    yield item[:3]
            return
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auxtrain-batches")
        try:
            step = 0
            self._pending = self._pool.submit(self._load, it, step)
            while (item := self._pending.result()) is not None:
                step += 1
                self._pending = self._pool.submit(self._load, it, step)
                if item[1] is not None:
                    self._state = item[3]
                    yield item[:3]
        finally:
            self.close()

    def rewind(self) -> None:
        """Stop building ahead and give the generator back its state before the last batch handed out."""
        self.close()
        if self._state is not None:
            self.generator.set_state(self._state)

    def close(self) -> None:
        """Wait for the batch being built (its draws must finish before anyone else draws) and stop."""
        if self._pending is not None:
            with contextlib.suppress(Exception):  # an error of a batch nobody will train on
                self._pending.result()
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
